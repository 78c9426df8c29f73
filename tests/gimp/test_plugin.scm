; test_plugin.scm: the plug-in in headless GIMP 3, driven by tests/gimp/test_plugin.py.
; The driver defines OUT (a folder for exports), the fixture paths and SCENARIOS, then loads
; this file. Each scenario prints "LDM: key value..." lines and exports PNGs into OUT; the
; driver checks them. A scenario that fails prints "LDM: scenario-error NAME".

(script-fu-use-v3)

(define (say . items)
  (display "LDM:")
  (for-each (lambda (x) (display " ") (display x)) items)
  (newline))

(define (out name) (string-append OUT "/" name))
(define (load-image path) (gimp-file-load RUN-NONINTERACTIVE path))
(define (layers img) (gimp-image-get-layers img))
(define (layer-count img) (vector-length (layers img)))
(define (first-layer img) (vector-ref (layers img) 0))

; The visible image as it would be flattened, with alpha kept.
(define (export-visible img path)
  (let* ((dup (gimp-image-duplicate img)))
    (if (= (gimp-image-get-base-type dup) INDEXED)  ; the driver reads no palette PNGs
        (gimp-image-convert-rgb dup))
    (gimp-image-merge-visible-layers dup CLIP-TO-IMAGE)
    (gimp-file-save RUN-NONINTERACTIVE dup path -1)
    (gimp-image-delete dup)))

; A drawable (layer mask, channel, the selection) on its own, as a new image: copied with
; nothing selected (GIMP would copy only the selected part), the selection restored after.
(define (export-drawable img drawable path)
  (let* ((saved (gimp-selection-save img))
         (source (if (= drawable (gimp-image-get-selection img)) saved drawable)))
    (gimp-selection-none img)
    (gimp-edit-copy (vector source))
    (let ((tmp (gimp-edit-paste-as-new-image)))
      (gimp-file-save RUN-NONINTERACTIVE tmp path -1)
      (gimp-image-delete tmp))
    (gimp-image-select-item img CHANNEL-OP-REPLACE saved)
    (gimp-image-remove-channel img saved)))

(define (run-scenario name thunk)
  (if (memq name SCENARIOS)
      (begin
        (say "scenario" name)
        (if (defined? 'NO-CATCH) (thunk) (catch (say "scenario-error" name) (thunk)))
        (say "scenario-end" name))))

; A message on one line (the driver reads the output line by line).
(define (one-line text)
  (list->string (map (lambda (c) (if (char=? c #\newline) #\space c)) (string->list text))))

; Calls thunk, which must fail; prints "rejected NAME", the error message ("message NAME
; text") and whether the image stayed as it was.
(define (expect-error name img thunk)
  (let* ((n (layer-count img))
         (w (gimp-image-get-width img))
         (images (vector-length (gimp-get-images)))
         (message "")
         (saved-hook *error-hook*)
         (result (begin
                   (set! *error-hook*
                         (lambda args
                           (if (and (pair? args) (string? (car args)))
                               (set! message (car args)))
                           (apply throw args)))
                   (catch 'error (thunk)))))
    (set! *error-hook* saved-hook)
    (say (if (eq? result 'error) "rejected" "accepted") name)
    (say "message" name (one-line message))
    (say "unchanged" name
         (if (and (= n (layer-count img)) (= w (gimp-image-get-width img))
                  (= images (vector-length (gimp-get-images))))
             "yes" "no"))))

; ---------------------------------------------------------------- inpaint
; A feathered elliptical selection on a photo, named arguments, no grow/blur: the driver checks
; one new layer on the crop, its mask = the selection, the flattened image unchanged outside
; the selection and changed inside.
(run-scenario 'inpaint
  (lambda ()
    (let* ((img (load-image PHOTO))
           (base (first-layer img)))
      (gimp-context-set-feather TRUE)
      (gimp-context-set-feather-radius 10 10)
      (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 180 90 60 50)
      (gimp-context-set-feather FALSE)
      (say "bounds" (cdr (gimp-selection-bounds img)))
      (say "layers-before" (layer-count img))
      (export-visible img (out "inpaint-before.png"))
      (export-drawable img (gimp-image-get-selection img) (out "inpaint-selection.png"))
      (let* ((result (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                                          #:drawables (vector base) #:model INPAINT-MODEL
                                          #:steps 2 #:seed 7 #:sampler "ddim"
                                          #:context-padding 16 #:mask-grow 0 #:mask-blur 0
                                          #:keep-known FALSE))
             (layer (car result)))
        (say "seed" (cadr result))
        (say "layers-after" (layer-count img))
        (say "top-is-new" (if (= (vector-ref (layers img) 0) layer) "yes" "no"))
        (say "base-position" (gimp-image-get-item-position img base))
        (say "offsets" (gimp-drawable-get-offsets layer))
        (say "size" (gimp-drawable-get-width layer) (gimp-drawable-get-height layer))
        (say "name" (gimp-item-get-name layer))
        (say "parasite" (caddr (gimp-item-get-parasite layer "gimp-ldm-parameters")))
        (say "has-mask" (if (gimp-layer-get-mask layer) "yes" "no"))
        (export-visible img (out "inpaint-after.png"))
        (export-drawable img (gimp-layer-get-mask layer) (out "inpaint-mask.png")))
      (gimp-image-delete img))))

;  ---------------------------------------------------------------- prompt
; A Stable Diffusion inpainting checkpoint with its CLIP text encoder (sd-inpaint-clip-tiny),
; a prompt, a negative prompt and guidance from Script-Fu; a hard selection, so "outside" is
; exact. Then guidance outside 1..30 is refused by GIMP before the plug-in runs.
(run-scenario 'prompt
  (lambda ()
    (let* ((img (load-image SD-IMAGE))
           (base (first-layer img)))
      (gimp-context-set-antialias FALSE)
      (gimp-context-set-feather FALSE)
      (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 16 20 30 24)
      (say "layers-before" (layer-count img))
      (export-visible img (out "prompt-before.png"))
      (export-drawable img (gimp-image-get-selection img) (out "prompt-selection.png"))
      (let* ((result (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                                          #:drawables (vector base) #:model SD-MODEL
                                          #:prompt "a photograph of an astronaut riding a horse"
                                          #:negative-prompt "blurry" #:guidance 7.5
                                          #:steps 2 #:seed 3 #:mask-grow 0 #:mask-blur 0))
             (layer (car result)))
        (say "layers-after" (layer-count img))
        (say "name" (gimp-item-get-name layer))
        (say "parasite" (caddr (gimp-item-get-parasite layer "gimp-ldm-parameters"))))
      (export-visible img (out "prompt-after.png"))
      (expect-error 'guidance img
        (lambda () (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                                        #:drawables (vector base) #:model SD-MODEL
                                        #:prompt "x" #:guidance 31.0 #:steps 1)))
      (gimp-image-delete img))))

; --------------------------------------------------------------- variants
; A layer moved partly off the canvas (the crop stays inside the layer and the canvas), and a
; greyscale image; hard selections, so "outside" is exact.
(run-scenario 'variants
  (lambda ()
    (let* ((img (load-image FIXTURE-IMAGE))
           (base (first-layer img)))
      (gimp-layer-set-offsets base 10 5)
      (gimp-context-set-antialias FALSE)
      (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 2 20 30 30)
      (export-visible img (out "offset-before.png"))
      (export-drawable img (gimp-image-get-selection img) (out "offset-selection.png"))
      (let ((layer (car (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                                             #:drawables (vector base) #:model INPAINT-MODEL
                                             #:steps 2 #:context-padding 6 #:mask-grow 0
                                             #:mask-blur 0))))
        (say "offset-layer" (gimp-drawable-get-offsets layer)
             (gimp-drawable-get-width layer) (gimp-drawable-get-height layer)))
      (export-visible img (out "offset-after.png"))
      (gimp-image-delete img))
    (let* ((img (load-image FIXTURE-IMAGE))
           (base (first-layer img)))
      (gimp-image-convert-grayscale img)
      (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 10 15 28 30)
      (export-visible img (out "grey-before.png"))
      (export-drawable img (gimp-image-get-selection img) (out "grey-selection.png"))
      (let ((layer (car (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                                             #:drawables (vector base) #:model INPAINT-MODEL
                                             #:steps 2 #:mask-grow 0 #:mask-blur 0))))
        (say "grey-layer-is-grey" (if (gimp-drawable-is-gray layer) "yes" "no")))
      (export-visible img (out "grey-after.png"))
      (gimp-context-set-antialias TRUE)
      (gimp-image-delete img))))

; ---------------------------------------------------------------- upscale
(run-scenario 'upscale
  (lambda ()
    (let* ((img (load-image LOWRES))
           (base (first-layer img))
           (result (plug-in-ldm-upscale #:run-mode RUN-NONINTERACTIVE #:image img
                                        #:drawables (vector base) #:model SR-MODEL
                                        #:steps 2 #:seed 3 #:sampler "ddim" #:eta 1.0))
           (big (car result))
           (layer (cadr result)))
      (say "seed" (caddr result))
      (say "new-image" (if (= big img) "no" "yes"))
      (say "new-size" (gimp-image-get-width big) (gimp-image-get-height big))
      (say "new-layers" (layer-count big))
      (say "name" (gimp-item-get-name layer))
      (say "source-size" (gimp-image-get-width img) (gimp-image-get-height img))
      (say "source-layers" (layer-count img))
      (export-visible big (out "upscale.png"))
      (gimp-image-delete big)
      ; color-fix off: the decoded colours as they are, said in the parasite
      (let* ((result (plug-in-ldm-upscale #:run-mode RUN-NONINTERACTIVE #:image img
                                          #:drawables (vector base) #:model SR-MODEL
                                          #:steps 2 #:seed 3 #:sampler "ddim" #:eta 1.0
                                          #:color-fix FALSE)))
        (say "nofix-parasite"
             (caddr (gimp-item-get-parasite (cadr result) "gimp-ldm-parameters")))
        (export-visible (car result) (out "upscale-nofix.png"))
        (gimp-image-delete (car result)))
      ; in place: the image itself is scaled and gets the result as a new layer
      (let* ((result (plug-in-ldm-upscale #:run-mode RUN-NONINTERACTIVE #:image img
                                          #:drawables (vector base) #:model SR-MODEL
                                          #:steps 2 #:seed 3 #:sampler "ddim" #:eta 1.0
                                          #:in-place TRUE))
             (layer (cadr result)))
        (say "in-place-same-image" (if (= (car result) img) "yes" "no"))
        (say "in-place-size" (gimp-image-get-width img) (gimp-image-get-height img))
        (say "in-place-layers" (layer-count img))
        (say "in-place-layer-size" (gimp-drawable-get-width layer)
             (gimp-drawable-get-height layer)))
      (gimp-image-delete img))))

; ---------------------------------------------------------------- equal
; The crop is the whole image (large context, working size above the image), the selection
; hard-edged: the new layer must be `ldm inpaint` on the same image, mask and seed.
(run-scenario 'equal
  (lambda ()
    (let* ((img (load-image FIXTURE-IMAGE))
           (base (first-layer img)))
      (gimp-context-set-antialias FALSE)
      (gimp-context-set-feather FALSE)
      (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 8 12 30 34)
      (gimp-image-select-rectangle img CHANNEL-OP-ADD 30 40 14 20)
      (gimp-context-set-antialias TRUE)
      (export-drawable img (gimp-image-get-selection img) (out "equal-mask.png"))
      (let* ((result (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                                          #:drawables (vector base) #:model INPAINT-MODEL
                                          #:steps 3 #:seed 42 #:sampler "dpmpp-2m"
                                          #:context-padding 4096 #:working-size 512
                                          #:mask-grow 0 #:mask-blur 0))
             (layer (car result)))
        (say "offsets" (gimp-drawable-get-offsets layer))
        ; without its mask, the new layer over the image is ldm inpaint's whole result
        (gimp-layer-remove-mask layer MASK-DISCARD)
        (export-visible img (out "equal-plugin.png"))
        (gimp-image-remove-layer img layer))
      ; a start from the filled selection, half the steps
      (let* ((result (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                                          #:drawables (vector base) #:model INPAINT-MODEL
                                          #:steps 4 #:seed 42 #:sampler "ddim"
                                          #:init "fill" #:strength 0.5
                                          #:context-padding 4096 #:working-size 512
                                          #:mask-grow 0 #:mask-blur 0))
             (layer (car result)))
        (say "fill-parasite" (caddr (gimp-item-get-parasite layer "gimp-ldm-parameters")))
        (gimp-layer-remove-mask layer MASK-DISCARD)
        (export-visible img (out "equal-plugin-fill.png"))
        (gimp-image-remove-layer img layer))
      ; Euler a (a k-diffusion sampler, with the noise of the seed at every step), in fp32
      (let* ((result (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                                          #:drawables (vector base) #:model INPAINT-MODEL
                                          #:steps 3 #:seed 42 #:sampler "euler-a"
                                          #:precision "fp32"
                                          #:context-padding 4096 #:working-size 512
                                          #:mask-grow 0 #:mask-blur 0))
             (layer (car result)))
        (say "euler-parasite" (caddr (gimp-item-get-parasite layer "gimp-ldm-parameters")))
        (gimp-layer-remove-mask layer MASK-DISCARD)
        (export-visible img (out "equal-plugin-euler.png")))
      (gimp-image-delete img))))

; ---------------------------------------------------------------- errors
; Each bad call returns an error and leaves the image as it was.
(run-scenario 'errors
  (lambda ()
    (let* ((img (load-image FIXTURE-IMAGE))
           (base (first-layer img))
           (inpaint (lambda args
                      (apply plug-in-ldm-inpaint
                             (append (list #:run-mode RUN-NONINTERACTIVE #:image img
                                           #:drawables (vector base) #:steps 2)
                                     args)))))
      (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 10 15 28 30)
      (export-visible img (out "errors-before.png"))
      (expect-error "missing-model" img (lambda () (inpaint #:model MISSING-MODEL)))
      (expect-error "folder-model" img (lambda () (inpaint #:model FOLDER-MODEL)))
      (expect-error "device-model" img (lambda () (inpaint #:model "/dev/null")))
      (expect-error "folder-model-upscale" img
                    (lambda () (plug-in-ldm-upscale #:run-mode RUN-NONINTERACTIVE #:image img
                                                    #:drawables (vector base) #:in-place TRUE
                                                    #:model FOLDER-MODEL #:steps 2)))
      (expect-error "text-model" img (lambda () (inpaint #:model TEXT-MODEL)))
      (expect-error "sr-model-for-inpaint" img (lambda () (inpaint #:model SR-MODEL)))
      (expect-error "steps-0" img (lambda () (inpaint #:model INPAINT-MODEL #:steps 0)))
      (expect-error "bogus-sampler" img
                    (lambda () (inpaint #:model INPAINT-MODEL #:sampler "bogus")))
      (expect-error "bogus-init" img
                    (lambda () (inpaint #:model INPAINT-MODEL #:init "bogus")))
      (expect-error "bogus-precision" img
                    (lambda () (inpaint #:model INPAINT-MODEL #:precision "half")))
      (expect-error "bogus-sampler-upscale" img
                    (lambda () (plug-in-ldm-upscale #:run-mode RUN-NONINTERACTIVE #:image img
                                                    #:drawables (vector base) #:in-place TRUE
                                                    #:model SR-MODEL #:steps 2
                                                    #:sampler "DDIM")))
      (expect-error "no-builtin-model" img (lambda () (inpaint)))
      ; the budget: refused before the work, saying what would fit
      (expect-error "memory-limit-1" img
                    (lambda () (plug-in-ldm-upscale #:run-mode RUN-NONINTERACTIVE #:image img
                                                    #:drawables (vector base) #:in-place TRUE
                                                    #:model SR-MODEL #:steps 2
                                                    #:memory-limit 1)))
      (expect-error "memory-limit-inpaint-1" img
                    (lambda () (inpaint #:model INPAINT-MODEL #:memory-limit 1)))
      (expect-error "inpaint-model-for-upscale" img
                    (lambda () (plug-in-ldm-upscale #:run-mode RUN-NONINTERACTIVE #:image img
                                                    #:drawables (vector base)
                                                    #:model INPAINT-MODEL #:steps 2)))
      ; careless Script-Fu arguments
      (expect-error "steps-1001" img (lambda () (inpaint #:model INPAINT-MODEL #:steps 1001)))
      (expect-error "mask-grow-negative" img
                    (lambda () (inpaint #:model INPAINT-MODEL #:mask-grow -1)))
      (expect-error "working-size-0" img
                    (lambda () (inpaint #:model INPAINT-MODEL #:working-size 0)))
      (expect-error "empty-model-path" img (lambda () (inpaint #:model "")))
      (let ((channel (gimp-channel-new img "channel" 48 64 50 (gimp-context-get-foreground))))
        (gimp-image-insert-channel img channel 0 0)
        (expect-error "channel" img
                      (lambda () (inpaint #:model INPAINT-MODEL #:drawables (vector channel))))
        (gimp-image-remove-channel img channel))
      ; a layer of another image: its pixels must not land in this one, nor this image scale
      (let* ((other (load-image FIXTURE-IMAGE))
             (layer (first-layer other)))
        (expect-error "other-image" img
                      (lambda () (inpaint #:model INPAINT-MODEL #:drawables (vector layer))))
        (expect-error "other-image-upscale" img
                      (lambda () (plug-in-ldm-upscale #:run-mode RUN-NONINTERACTIVE #:image img
                                                      #:drawables (vector layer)
                                                      #:in-place TRUE #:model SR-MODEL
                                                      #:steps 2)))
        (say "other-image-untouched"
             (if (and (= (layer-count other) 1) (= (gimp-image-get-width other) 48)) "yes" "no"))
        (gimp-image-delete other))
      (gimp-selection-none img)
      (expect-error "empty-selection" img (lambda () (inpaint #:model INPAINT-MODEL)))
      (export-visible img (out "errors-after.png"))
      (gimp-image-delete img))
    ; An indexed image (the menu offers neither procedure for one): refused, not quantised.
    (let* ((img (load-image FIXTURE-IMAGE))
           (base (first-layer img)))
      (gimp-image-convert-indexed img CONVERT-DITHER-NONE CONVERT-PALETTE-GENERATE 16 FALSE
                                  FALSE "")
      (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 10 15 28 30)
      (export-visible img (out "indexed-before.png"))
      (expect-error "indexed" img
                    (lambda () (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                                                    #:drawables (vector base)
                                                    #:model INPAINT-MODEL #:steps 2)))
      (expect-error "indexed-upscale" img
                    (lambda () (plug-in-ldm-upscale #:run-mode RUN-NONINTERACTIVE #:image img
                                                    #:drawables (vector base) #:in-place TRUE
                                                    #:model SR-MODEL #:steps 2)))
      (say "indexed-still-indexed" (if (= (gimp-image-get-base-type img) INDEXED) "yes" "no"))
      (export-visible img (out "indexed-after.png"))
      (gimp-image-delete img))))

; ---------------------------------------------------------------- cancel
; Run with GIMP_LDM_CANCEL_AT_STEP=2: the run stops at step 2 and changes nothing.
(run-scenario 'cancel
  (lambda ()
    (let* ((img (load-image FIXTURE-IMAGE))
           (base (first-layer img)))
      (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 10 15 28 30)
      (expect-error "cancelled" img
                    (lambda ()
                      (let ((result (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE
                                                         #:image img #:drawables (vector base)
                                                         #:model INPAINT-MODEL #:steps 5)))
                        (say "cancel-result" result)
                        result)))
      (gimp-image-delete img))))

; ------------------------------------------------------------ last values
; WITH-LAST-VALS takes the values saved by an earlier interactive run (the driver writes the
; settings file GIMP keeps them in), here with the built-in model from GIMP_LDM_MODEL_DIR.
(run-scenario 'last-values
  (lambda ()
    (let* ((img (load-image FIXTURE-IMAGE))
           (base (first-layer img)))
      (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 10 15 28 30)
      (let* ((result (plug-in-ldm-inpaint #:run-mode RUN-WITH-LAST-VALS #:image img
                                          #:drawables (vector base)))
             (layer (car result)))
        (say "seed" (cadr result))
        (say "name" (gimp-item-get-name layer))
        (say "parasite" (caddr (gimp-item-get-parasite layer "gimp-ldm-parameters"))))
      (gimp-image-delete img))))

; ------------------------------------------------------------------- undo
; In the GUI (under Xvfb): after a run, the driver presses Ctrl+Z once; that one undo step
; must take the image back to exactly what it was (one layer, the same pixels).
(run-scenario 'undo
  (lambda ()
    (let* ((img (load-image FIXTURE-IMAGE))
           (base (first-layer img)))
      (gimp-display-new img)
      (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 10 15 28 30)
      (export-visible img (out "undo-before.png"))
      (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector base)
                           #:model INPAINT-MODEL #:steps 2 #:seed 1)
      (gimp-displays-flush)
      (say "layers-after-run" (layer-count img))
      (export-visible img (out "undo-ready.png"))   ; tells the driver to press Ctrl+Z
      (let wait ((i 0))
        (if (and (< i 200000) (> (layer-count img) 1))
            (wait (+ i 1))))
      (say "layers-after-undo" (layer-count img))
      (say "selection-kept" (if (gimp-selection-is-empty img) "no" "yes"))
      (export-visible img (out "undo-after.png"))
      (gimp-image-clean-all img))))

; ----------------------------------------------------- interactive cancel
; In the GUI: the dialog opens with the saved values (1000 steps), the driver presses OK, then
; Escape in the progress window: the run ends cancelled and the image is as it was.
(run-scenario 'interactive-cancel
  (lambda ()
    (let* ((img (load-image PHOTO))
           (base (first-layer img)))
      (gimp-display-new img)
      (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 150 60 120 110)
      (export-visible img (out "cancel-before.png"))
      (say "result" (plug-in-ldm-inpaint #:run-mode RUN-INTERACTIVE #:image img
                                         #:drawables (vector base)))
      (say "layers-after" (layer-count img))
      (export-visible img (out "cancel-after.png"))
      (gimp-image-clean-all img))))

; -------------------------------------------------------- preview cancel
; In the GUI: the dialog opens, the driver turns Preview on, waits, and cancels; then the image
; as it is, and after the driver's one Ctrl+Z (the preview made no undo step: it undoes the
; selection made before the dialog).
(run-scenario 'preview-cancel
  (lambda ()
    (let* ((img (load-image PHOTO))
           (base (first-layer img)))
      (gimp-display-new img)
      (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 150 60 120 110)
      (gimp-image-clean-all img)
      (export-visible img (out "preview-before.png"))
      (say "result" (plug-in-ldm-inpaint #:run-mode RUN-INTERACTIVE #:image img
                                         #:drawables (vector base)))
      (say "layers-after" (layer-count img))
      (say "dirty-after" (if (gimp-image-is-dirty img) "yes" "no"))
      (export-visible img (out "preview-after.png"))   ; tells the driver to press Ctrl+Z
      (let wait ((i 0))
        (if (and (< i 200000) (not (gimp-selection-is-empty img)))
            (wait (+ i 1))))
      (say "layers-after-undo" (layer-count img))
      (say "selection-undone" (if (gimp-selection-is-empty img) "yes" "no"))
      (gimp-image-clean-all img))))

; ---------------------------------------------------------------- large
; A 4096 x 4096 photo-sized image (test_plugin_large.py): inpainting a small selection at the
; default region settings (working size 512) finishes, one new layer on the crop, the pixels
; outside it as before (the driver compares a 512 x 512 area around it); a 4x upscale
; (16384 x 16384) within MEMORY-MB is refused at once with the budget's message, in place
; and as a new image, and so is inpainting the whole image at full size (working size 8192)
; within 1024 MB: no layer, no image, no size changes. GIMP answers after each call.
(define (export-area img x y w h path)
  (let* ((dup (gimp-image-duplicate img)))
    (gimp-image-merge-visible-layers dup CLIP-TO-IMAGE)
    (gimp-image-crop dup w h x y)
    (gimp-file-save RUN-NONINTERACTIVE dup path -1)
    (gimp-image-delete dup)))

(run-scenario 'large
  (lambda ()
    (let* ((img (load-image LARGE-IMAGE))
           (base (first-layer img))
           (upscale (lambda (in-place)
                      (plug-in-ldm-upscale #:run-mode RUN-NONINTERACTIVE #:image img
                                           #:drawables (vector base) #:in-place in-place
                                           #:steps 2 #:memory-limit (string->number MEMORY-MB)))))
      (say "size" (gimp-image-get-width img) (gimp-image-get-height img))
      (gimp-context-set-antialias FALSE)
      (gimp-context-set-feather FALSE)
      (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 2000 2000 96 96)
      (export-area img 1792 1792 512 512 (out "large-before.png"))
      (let* ((result (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                                          #:drawables (vector base) #:steps 2 #:seed 4))
             (layer (car result)))
        (say "inpaint-done" (layer-count img))
        (say "offsets" (gimp-drawable-get-offsets layer))
        (say "layer-size" (gimp-drawable-get-width layer) (gimp-drawable-get-height layer)))
      (export-area img 1792 1792 512 512 (out "large-after.png"))
      (say "layers-before-upscale" (layer-count img))
      (say "images-before-upscale" (vector-length (gimp-get-images)))
      (expect-error "upscale-new-image" img (lambda () (upscale FALSE)))
      (say "upscale-done" "new-image")
      (expect-error "upscale-in-place" img (lambda () (upscale TRUE)))
      (say "upscale-done" "in-place")
      ; the whole image at full size within 1024 MB: refused from the plan, before the read
      (gimp-selection-all img)
      (expect-error "inpaint-full-size" img
                    (lambda ()
                      (plug-in-ldm-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                                           #:drawables (vector base) #:steps 2 #:seed 4
                                           #:working-size 8192 #:memory-limit 1024)))
      (gimp-selection-none img)
      (say "layers-after-upscale" (layer-count img))
      (say "images-after-upscale" (vector-length (gimp-get-images)))
      (say "size-after" (gimp-image-get-width img) (gimp-image-get-height img))
      (gimp-image-delete img))))
