; test_brush.scm: the Inpainting Brush in headless GIMP 3 without its window, driven by
; tests/gimp/test_brush.py. The driver defines OUT, PHOTO, INPAINT-MODEL, PLUGIN-SCM (test_plugin.scm,
; whose helpers this uses) and SCENARIOS. The same session code as the window's runs: action
; "update" takes one look at the strokes layer and inpaints what changed.

(load PLUGIN-SCM)

(define (brush img base action . args)
  (apply plug-in-ldm-inpaint-brush
         (append (list #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector base)
                       #:action action)
                 args)))

; Paints (fill with the foreground) or erases a hard rectangle on the strokes layer.
(define (paint img strokes x y w h)
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE x y w h)
  (gimp-drawable-edit-fill strokes FILL-FOREGROUND)
  (gimp-selection-none img))
(define (erase img strokes x y w h)
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE x y w h)
  (gimp-drawable-edit-clear strokes)
  (gimp-selection-none img))

; The visible image without the strokes layer (its paint covers the result).
;; One layer as the canvas shows it, in image coordinates (a layer larger than the canvas and
;; moved is clipped to it). edit-copy + paste-as-new-image does not do that the same way in
;; GIMP 3.0 (clipped to the canvas) and 3.2 (the whole layer).
(define (export-layer-on-canvas img layer path)
  (let* ((tmp (gimp-image-new (gimp-image-get-width img) (gimp-image-get-height img)
                              (gimp-image-get-base-type img)))
         (copy (gimp-layer-new-from-drawable layer tmp))
         (offsets (gimp-drawable-get-offsets layer)))
    (gimp-image-insert-layer tmp copy 0 0)
    (gimp-layer-set-offsets copy (car offsets) (cadr offsets))
    (gimp-layer-resize-to-image-size copy)
    (gimp-file-save RUN-NONINTERACTIVE tmp path -1)
    (gimp-image-delete tmp)))

(define (export-without-strokes img strokes path)
  (gimp-item-set-visible strokes FALSE)
  (export-visible img path)
  (gimp-item-set-visible strokes TRUE))

(define (photo)
  (let ((img (load-image PHOTO)))
    (gimp-image-crop img 160 120 150 80)
    img))

; ------------------------------------------------------------------ brush
; Stroke A, update; stroke B far away and A erased, update; an update with no change; then
; Discard. Exports after each step; the driver checks where the result layer changed.
(run-scenario 'brush
  (lambda ()
    (let* ((img (photo))
           (base (first-layer img)))
      (gimp-context-set-foreground '(255 0 0))
      (gimp-context-set-feather FALSE)
      (export-visible img (out "before.png"))
      (say "layers-before" (layer-count img))
      (let* ((started (brush img base "start"))
             (strokes (car started))
             (result (cadr started)))
        (say "layers-started" (layer-count img))
        (say "strokes-selected"
             (if (= (vector-ref (gimp-image-get-selected-layers img) 0) strokes) "yes" "no"))
        (say "order" (if (and (= (vector-ref (layers img) 0) strokes)
                              (= (vector-ref (layers img) 1) result)
                              (= (vector-ref (layers img) 2) base)) "yes" "no"))
        (say "names" (gimp-item-get-name strokes) "/" (gimp-item-get-name result))
        (export-drawable img result (out "result-0.png"))
        (paint img strokes 30 30 14 14)
        (say "regions-1" (caddr (brush img base "update" #:model INPAINT-MODEL #:seed 3
                                       #:steps 2)))
        (export-drawable img result (out "result-1.png"))
        (export-without-strokes img strokes (out "visible-1.png"))
        (paint img strokes 110 70 12 10)
        (erase img strokes 30 30 14 14)
        (say "regions-2" (caddr (brush img base "update" #:model INPAINT-MODEL #:seed 3
                                       #:steps 2)))
        (export-drawable img result (out "result-2.png"))
        (export-without-strokes img strokes (out "visible-2.png"))
        (say "regions-3" (caddr (brush img base "update" #:model INPAINT-MODEL #:seed 3
                                       #:steps 2)))
        (brush img base "discard")
        (say "layers-discarded" (layer-count img))
        (say "base-selected"
             (if (= (vector-ref (gimp-image-get-selected-layers img) 0) base) "yes" "no"))
        (export-visible img (out "discarded.png")))
      (gimp-image-delete img))))

; ------------------------------------------------------------------ builtin
; No model given: the built-in model, fast mode; then Apply keeps the result layer only.
(run-scenario 'builtin
  (lambda ()
    (let* ((img (photo))
           (base (first-layer img)))
      (gimp-context-set-foreground '(0 255 0))
      (export-visible img (out "builtin-before.png"))
      (let* ((started (brush img base "start"))
             (strokes (car started))
             (result (cadr started)))
        (paint img strokes 60 40 16 16)
        (say "regions" (caddr (brush img base "update" #:seed 1)))
        (export-without-strokes img strokes (out "builtin-visible.png"))
        (brush img base "apply")
        (say "layers-applied" (layer-count img))
        (say "top-is-result" (if (= (vector-ref (layers img) 0) result) "yes" "no"))
        (say "strokes-gone" (if (gimp-item-id-is-valid strokes) "no" "yes"))
        (export-visible img (out "builtin-applied.png")))
      (gimp-image-delete img))))

; ------------------------------------------------------------------ refused
(run-scenario 'refused
  (lambda ()
    (let* ((img (photo))
           (base (first-layer img)))
      (expect-error 'update-without-start img
        (lambda () (brush img base "update" #:model INPAINT-MODEL)))
      (expect-error 'open-without-window img (lambda () (brush img base "open")))
      (expect-error 'bad-action img (lambda () (brush img base "paint")))
      (expect-error 'bad-mode img (lambda () (brush img base "start" #:mode "slow")))
      (gimp-image-delete img))))

; ------------------------------------------------------------ offset-grey
; A greyscale image whose layer is moved by (10, 5) and larger than the canvas: the brush's
; layers take the layer's offsets and size, a stroke at image (40, 30) is at layer (30, 25).
(run-scenario 'offset-grey
  (lambda ()
    (let* ((img (photo))
           (base (first-layer img)))
      (gimp-image-convert-grayscale img)
      (gimp-layer-set-offsets base 10 5)
      (gimp-context-set-foreground '(255 255 255))
      (export-visible img (out "grey-before.png"))
      (let* ((started (brush img base "start"))
             (strokes (car started))
             (result (cadr started)))
        (say "offsets" (gimp-drawable-get-offsets strokes) (gimp-drawable-get-offsets result))
        (say "grey" (if (= (gimp-drawable-type result) GRAYA-IMAGE) "yes" "no"))
        (paint img strokes 40 30 12 12)
        (say "regions" (caddr (brush img base "update" #:model INPAINT-MODEL #:seed 2
                                     #:steps 2)))
        (export-layer-on-canvas img result (out "grey-result.png"))
        (export-without-strokes img strokes (out "grey-visible.png")))
      (gimp-image-delete img))))

; -------------------------------------------------------------------- gui
; The real window (GIMP's GUI under Xvfb; the driver paints a stroke on the canvas with the
; paintbrush and clicks Apply); afterwards the image as it is.
(run-scenario 'gui
  (lambda ()
    (let* ((img (photo))
           (base (first-layer img)))
      (gimp-display-new img)
      (export-visible img (out "gui-before.png"))
      (say "gui-ready")
      (let ((r (plug-in-ldm-inpaint-brush #:run-mode RUN-INTERACTIVE #:image img
                                          #:drawables (vector base) #:model INPAINT-MODEL
                                          #:steps 2 #:seed 1)))
        (say "layers-after" (layer-count img))
        (say "regions" (caddr r))
        (say "top-name" (gimp-item-get-name (vector-ref (layers img) 0)))
        (export-visible img (out "gui-after.png"))))))
