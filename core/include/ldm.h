/* ldm.h: the public interface of libldm-core, the engine of gimp-ldm.
 *
 * Clients (the GIMP plug-in, the `ldm` program, the tests) include only this header.
 * Every function that can fail takes a GError **; nothing aborts on bad input.
 */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* core/ is compiled with hidden visibility (core/meson.build): what this header declares is
 * all the engine exports, beside GEGL's and GTK's symbols in the plug-in. */
#pragma GCC visibility push(default)

/* ---------------------------------------------------------------- errors */

#define LDM_ERROR (ldm_error_quark ())
GQuark ldm_error_quark (void);

typedef enum {
    LDM_ERROR_IO,          /* the file cannot be opened or read */
    LDM_ERROR_FORMAT,      /* the file is not what it claims to be, or is damaged */
    LDM_ERROR_UNSUPPORTED, /* valid, but something this engine does not handle */
    LDM_ERROR_MODEL,       /* the tensors do not fit the architecture, or the run gave
                            * non-finite values (NaN/infinite weights, overflow) */
    LDM_ERROR_ARGUMENT,    /* a bad argument from the caller */
    LDM_ERROR_CANCELLED,   /* the caller's cancel flag was set */
    LDM_ERROR_NO_MEMORY,   /* an allocation failed */
} LdmError;

/* --------------------------------------------------------- tensor files */

typedef enum {
    LDM_DTYPE_BOOL,
    LDM_DTYPE_U8,
    LDM_DTYPE_I8,
    LDM_DTYPE_I16,
    LDM_DTYPE_U16,
    LDM_DTYPE_F16,
    LDM_DTYPE_BF16,
    LDM_DTYPE_I32,
    LDM_DTYPE_U32,
    LDM_DTYPE_F32,
    LDM_DTYPE_F64,
    LDM_DTYPE_I64,
    LDM_DTYPE_U64,
    LDM_DTYPE_F8_E4M3,
    LDM_DTYPE_F8_E5M2,
    LDM_DTYPE_COUNT
} LdmDType;

const char *ldm_dtype_name (LdmDType dtype); /* "F32", "F16", ... as safetensors spells them */
size_t      ldm_dtype_size (LdmDType dtype); /* bytes per element */

#define LDM_MAX_DIMS 8

/* One named tensor of a file. `data` points into the read-only mapped file at the tensor's
 * first element; `stride` is in elements (PyTorch tensors may be views of a larger storage). */
typedef struct {
    const char    *name;
    LdmDType       dtype;
    int            ndim;
    int64_t        shape[LDM_MAX_DIMS];
    int64_t        stride[LDM_MAX_DIMS];
    const uint8_t *data;
} LdmTensor;

typedef enum {
    LDM_FILE_SAFETENSORS,
    LDM_FILE_TORCH_ZIP,
} LdmFileFormat;

typedef struct LdmTensorFile LdmTensorFile;

/* Opens a .safetensors or PyTorch (.ckpt/.pt/.pth, zip) file. The file is mapped, never read
 * whole; a checkpoint's pickle is interpreted by a restricted machine that executes nothing. */
LdmTensorFile   *ldm_tensor_file_open   (const char *path, GError **error);
void             ldm_tensor_file_free   (LdmTensorFile *file);
const char      *ldm_tensor_file_path   (const LdmTensorFile *file);
LdmFileFormat    ldm_tensor_file_format (const LdmTensorFile *file);
size_t           ldm_tensor_file_count  (const LdmTensorFile *file);
const LdmTensor *ldm_tensor_file_at     (const LdmTensorFile *file, size_t index);
const LdmTensor *ldm_tensor_file_lookup (const LdmTensorFile *file, const char *name);

int64_t  ldm_tensor_numel    (const LdmTensor *tensor);
/* Converts any dtype to float32 into dst (dst_len elements, C order of `shape`). */
gboolean ldm_tensor_read_f32 (const LdmTensor *tensor, float *dst, size_t dst_len,
                              GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LdmTensorFile, ldm_tensor_file_free)

/* --------------------------------------------------------------- sampling */

typedef enum {
    LDM_SAMPLER_DDIM,       /* DDIM with eta, as the CompVis scripts (eta 0 deterministic) */
    LDM_SAMPLER_DDPM,       /* DDPM ancestral sampling over the same timesteps */
    LDM_SAMPLER_DPMPP_2M,   /* DPM-Solver++(2M): good results in 15-25 steps */
    LDM_SAMPLER_DPMPP_2M_KARRAS, /* DPM++ 2M on Karras et al.'s sigmas (rho 7), as k-diffusion
                                  * (webui's and Krita's "DPM++ 2M Karras"); the U-Net gets the
                                  * interpolated timestep of each sigma */
    LDM_SAMPLER_EULER_A,    /* Euler ancestral (eta 1) on the model's own sigmas, as
                             * k-diffusion (webui's "Euler a"); fresh noise every step */
    LDM_SAMPLER_DEFAULT,    /* the model's default, resolved when the model is known
                             * (ldm_sampler_for_model): DPM++ 2M Karras for Stable Diffusion,
                             * DDIM for the LDM models */
} LdmSampler;

/* "ddim", "ddpm", "dpmpp-2m", "dpmpp-2m-karras", "euler-a", "default" */
const char *ldm_sampler_name  (LdmSampler sampler);
/* Parses a sampler name; FALSE for an unknown one. */
gboolean    ldm_sampler_parse (const char *name, LdmSampler *sampler);

/* Where sampling starts. */
typedef enum {
    LDM_INIT_NOISE,    /* pure noise (the authors'); `strength` is not used */
    LDM_INIT_FILL,     /* inpainting: the hole filled classically (a smooth membrane from its
                        * surroundings), encoded and noised to `strength` (webui's "fill") */
    LDM_INIT_ORIGINAL, /* the image itself (upscaling: its bilinear 4x enlargement), encoded
                        * and noised to `strength` (img2img: keeps the layout) */
} LdmInit;

const char *ldm_init_name  (LdmInit init); /* "noise", "fill", "original" */
gboolean    ldm_init_parse (const char *name, LdmInit *init);

/* ---------------------------------------------------------------- models */

typedef enum {
    LDM_MODEL_UNKNOWN,
    LDM_MODEL_LDM_INPAINT, /* CompVis LatentDiffusion, concat [x_t | enc(masked) | mask] */
    LDM_MODEL_LDM_SR,      /* CompVis LatentDiffusion, concat [x_t | low-res image] */
    LDM_MODEL_SD_INPAINT,  /* Stable Diffusion 1.x inpainting, hybrid [x_t | mask | masked latent] */
    LDM_MODEL_SD,          /* Stable Diffusion 1.x text-to-image (4-channel U-Net, crossattn):
                            * inpaints by setting the known latents back after every step */
} LdmModelKind;

const char *ldm_model_kind_name (LdmModelKind kind);

/* The sampler that runs for `sampler` with a model of `kind`: `sampler` itself, or for
 * LDM_SAMPLER_DEFAULT the kind's default (DPM++ 2M Karras for the Stable Diffusion kinds,
 * DDIM for the others). The one place the per-model default is decided. */
LdmSampler  ldm_sampler_for_model (LdmSampler sampler, LdmModelKind kind);

typedef struct LdmModel LdmModel;

/* Loads a model file and its architecture: from a CompVis config.yaml beside the file when one
 * is there, otherwise recognised from the tensor names and shapes. Every tensor the
 * architecture needs is checked for presence and shape. EMA weights are preferred. */
LdmModel     *ldm_model_load     (const char *path, GError **error);
void          ldm_model_free     (LdmModel *model);
LdmModelKind  ldm_model_kind     (const LdmModel *model);
/* A human-readable, multi-line description (kind, sub-models, parameters, dtype, source). */
char         *ldm_model_describe (const LdmModel *model);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LdmModel, ldm_model_free)

/* The models the project trains and ships (data/models/), one per task. */
#define LDM_BUILTIN_INPAINT "ldm-inpaint-builtin.safetensors"
#define LDM_BUILTIN_UPSCALE "ldm-sr-builtin.safetensors"

/* The path of the built-in model file BASENAME (newly allocated). $GIMP_LDM_MODEL_DIR, when
 * set, is the only folder searched; otherwise the first of DIRS (NULL-terminated; empty
 * entries skipped) that holds the file. The error names every place looked at. */
char         *ldm_builtin_model_find (const char *basename, const char *const *dirs,
                                      GError **error);

/* ---------------------------------------------------------------- images */

/* An 8-bit image: `channels` (1 grey, 3 RGB, 4 RGBA) interleaved bytes per pixel, rows top to
 * bottom without padding. Whoever fills `pixels` owns it (ldm_image_clear frees it). */
typedef struct {
    int      width, height, channels;
    uint8_t *pixels;
} LdmImage;

void ldm_image_clear (LdmImage *image);

/* The largest side ldm_inpaint and ldm_upscale take (larger: LDM_ERROR_ARGUMENT). File
 * readers check it from the header, before any pixel buffer exists. */
#define LDM_IMAGE_MAX_SIDE 16384

/* --------------------------------------------------------------- pipelines */

/* Called after each denoising step; return FALSE to cancel (the pipeline then fails with
 * LDM_ERROR_CANCELLED and writes nothing). */
typedef gboolean (*LdmProgressFn) (void *data, int step, int steps);
/* Called after each U-Net window when a step runs in windows (tiles > 1): the step under way
 * (1-based) of steps (the schedule's count; before the first step ends, the count the
 * parameters ask for), and the window just done of tiles. FALSE cancels as LdmProgressFn
 * does, within one U-Net call. */
typedef gboolean (*LdmTileProgressFn) (void *data, int step, int steps, int tile, int tiles);

/* A rectangle in pixels (regions: the caller's coordinates). */
typedef struct {
    int x, y, width, height;
} LdmRect;

typedef struct {
    LdmSampler    sampler;       /* LDM_SAMPLER_DEFAULT: the model's (ldm_sampler_for_model) */
    int           steps;
    float         eta;           /* DDIM only: 0 deterministic, 1 = DDPM-like */
    uint64_t      seed;          /* for the initial noise and eta > 0 */
    /* Inpainting: after every step, the latents more than one latent pixel away from the mask
     * are set to the masked image's own encoding, noised to the step's level (RePaint-style
     * blending, the CompVis DDIM sampler's mask/x0), so the fill grows from its surroundings.
     * FALSE = the authors' inpainting script, which does not blend. The blend's noise always
     * comes from the seed, not from `noise` below. A text-to-image model (LDM_MODEL_SD)
     * blends either way (the image's own encoding): it is how such a model inpaints. */
    gboolean      keep_known;
    /* Inpainting: shift the decoded fill's colours by the difference between the input and
     * the decoded picture around the fill (the pixels within 4 latent blocks of it, outside
     * it), correcting the autoencoder's colour drift (as webui's colour correction). FALSE =
     * the decoded pixels as they are. */
    gboolean      match_colors;
    /* Colours from what is known, detail from the model. Upscaling: make the output's f x f
     * block means agree with the input's pixels (back-projection of the residual,
     * color_fix.c), so the colours stay the input's (FALSE: the LDSR notebook). Inpainting
     * with an LDM model: the fill keeps the model's detail finer than 3/4 of a latent block
     * and takes its smooth part (colour, shading) from a classical fill of the hole (the
     * membrane, as init = fill uses); not for Stable Diffusion, where the prompt decides
     * what appears. FALSE = the decoded pixels as they are. */
    gboolean      color_fix;
    /* The start (see LdmInit) and, for a start from an image, the share of the schedule it
     * goes through: 1 starts at the noisiest step, 0.5 runs the last half of the steps from
     * the image's latent noised to that step's level. In (0, 1]. */
    LdmInit       init;
    float         strength;
    /* Optional initial latent x_T, NCHW (1 x C x h x w) as the fixtures store it; its size
     * must be the padded latent size. NULL = drawn from the seed. */
    const float  *x_T;
    size_t        x_T_len;
    /* Optional per-step noise (eta > 0, DDPM): fills n standard normal values, NCHW like x_T,
     * for step `step` (0 = the first, noisiest). NULL = drawn from the seed. For replaying a
     * reference run. */
    gboolean    (*noise) (void *data, int step, float *out, size_t n, GError **error);
    void         *noise_data;
    /* Stable Diffusion: the text prompt and the negative prompt (UTF-8; NULL or "" = the
     * empty prompt), read through CLIP's tokenizer and the checkpoint's text encoder when
     * `context` is NULL (the engine loads both on first use: the tokenizer from a diffusers
     * tokenizer/ folder beside the model, else the built-in merges). A prompt over 75 tokens
     * is encoded in chunks of 75 whose contexts are concatenated (77 x chunks tokens); the
     * negative prompt is padded with empty chunks to as many. The LDM models ignore both. */
    const char   *prompt, *negative_prompt;
    /* Stable Diffusion: cross-attention contexts given directly (tokens x dim floats; they
     * take the place of the prompts) and the guidance scale, LDM_GUIDANCE_MIN to
     * LDM_GUIDANCE_MAX; with guidance != 1 the U-Net runs a [uncond, cond] batch (given
     * contexts: when uncond_context is given), with 1 the prompt alone. */
    const float  *context, *uncond_context;
    int           context_tokens;
    float         guidance;
    LdmProgressFn progress;
    LdmTileProgressFn tile_progress; /* NULL: none; both get progress_data */
    void         *progress_data;
    /* Bytes the process may hold during the run (0: no limit). The engine plans the windows
     * of sampling, encoding and decoding from it before it starts (the largest that fit) and
     * refuses at once (LDM_ERROR_NO_MEMORY) a run that cannot fit even in its smallest
     * windows, saying the size that would fit. Default: three quarters of the memory the
     * system has available (MemAvailable) when the parameters are initialised. */
    uint64_t      memory_limit;
    /* Inpainting: the part of the output the caller keeps (pixels of the image; width or
     * height 0: all of it). Only the latent cells under it and LDM_KEEP_MARGIN cells around
     * it are decoded (the decoder is the costliest part of a small region after the U-Net);
     * outside them the decoded picture is taken to be the input, so the colour matching sees
     * the decoded pixels only. The output outside `keep` is then not what a full decode
     * gives; its pixels outside the mask are still the input's, bit for bit. */
    LdmRect       keep;
} LdmSampleParams;

/* Latent cells decoded around LdmSampleParams.keep (the decoder's reach that matters). */
#define LDM_KEEP_MARGIN 2

#define LDM_GUIDANCE_MIN 1.0
#define LDM_GUIDANCE_MAX 30.0

typedef enum {
    LDM_TASK_INPAINT,
    LDM_TASK_UPSCALE,
} LdmTask;

/* What a user gets (the one source of the plug-in's and ldm's defaults): the model's default
 * sampler (LDM_SAMPLER_DEFAULT: DDIM for LDM models, DPM++ 2M Karras for Stable Diffusion),
 * 25 steps, eta 0 (upscaling: 10 steps, eta 1 as LDSR), seed 0, guidance 7.5, empty prompts
 * (NULL), keep_known, match_colors and color_fix on. */
void ldm_sample_params_init (LdmSampleParams *params, LdmTask task);
/* The authors' procedure exactly (the CompVis inpainting script, the LDSR notebook): DDIM,
 * 50 steps, eta 0 (upscaling: 100 steps, eta 1), seed 0, guidance 7.5, no aids. */
void ldm_sample_params_init_authors (LdmSampleParams *params, LdmTask task);

/* The arithmetic of the convolutions, linear layers and attention products. Sums, norms,
 * softmax and everything between the layers stay fp32 in every precision. */
typedef enum {
    LDM_PRECISION_AUTO, /* bfloat16 where the CPU multiplies it natively (AVX512-BF16 or AMX:
                         * about 1.5x faster, pictures within about 50 dB of fp32), else fp32 */
    LDM_PRECISION_FP32, /* fp32 throughout: the authors' numerics */
    LDM_PRECISION_BF16, /* bfloat16 inputs and weights with fp32 sums; LDM_ERROR_UNSUPPORTED on
                         * a CPU without bfloat16 instructions */
} LdmPrecision;

const char *ldm_precision_name  (LdmPrecision precision); /* "auto", "fp32", "bf16" */
gboolean    ldm_precision_parse (const char *name, LdmPrecision *precision);

/* A model made ready to run: its networks built on oneDNN in `precision`, weights reordered
 * once. The model may be freed afterwards. */
typedef struct LdmEngine LdmEngine;

LdmEngine   *ldm_engine_new   (const LdmModel *model, LdmPrecision precision, GError **error);
/* The precision the engine runs: LDM_PRECISION_FP32 or LDM_PRECISION_BF16 (AUTO resolved). */
LdmPrecision ldm_engine_precision (const LdmEngine *engine);
void         ldm_engine_free  (LdmEngine *engine);
LdmModelKind ldm_engine_kind  (const LdmEngine *engine);
/* Side lengths of an input are padded up to a multiple of this (then cropped back). */
int          ldm_engine_alignment (const LdmEngine *engine);

/* The cross-attention context a Stable Diffusion model's ldm_inpaint makes of PROMPT (NULL or
 * "" = the empty prompt), through the tokenizer and text encoder the engine keeps: *tokens
 * (77 x chunks of 75 tokens) rows of *dim floats (the U-Net's context_dim), newly allocated
 * (g_free). A model without cross-attention is LDM_ERROR_UNSUPPORTED; a checkpoint without a
 * text encoder LDM_ERROR_ARGUMENT. */
float   *ldm_engine_encode_prompt (LdmEngine *engine, const char *prompt, int *tokens,
                                   int *dim, GError **error);

/* Inpaints `image` (grey, RGB or RGBA) where `mask` (1 channel, same size) is >= 128 (the
 * authors' 0.5 threshold; a grey image runs as RGB and its fill is the luma). `out` gets a new
 * image of the same size and channels whose pixels outside the mask are the input's, bit for
 * bit (alpha is kept everywhere). */
gboolean ldm_inpaint (LdmEngine *engine, const LdmImage *image, const LdmImage *mask,
                      const LdmSampleParams *params, LdmImage *out, GError **error);

/* Upscales `image` (RGB or RGBA) 4x with an LDM super-resolution model. `out` gets a new RGB
 * image (alpha, when present, is scaled up by nearest neighbour). */
gboolean ldm_upscale (LdmEngine *engine, const LdmImage *image, const LdmSampleParams *params,
                      LdmImage *out, GError **error);

/* The windows the engine's last ldm_inpaint or ldm_upscale ran in, planned from its
 * memory_limit: sides in latent cells (0 = the whole latent at once) and the cells
 * neighbouring windows share. */
typedef struct {
    int unet, unet_overlap, encode, decode, first_stage_overlap;
} LdmTilePlan;

void ldm_engine_last_plan (const LdmEngine *engine, LdmTilePlan *plan);

/* The windows a run of `task` on a width x height image would take with this model and
 * `params` (its memory_limit, guidance and init), planned before any pixel is read and
 * without an engine, by the planner ldm_inpaint and ldm_upscale use, with what the process
 * holds now: when the run cannot fit, FALSE with LDM_ERROR_NO_MEMORY and the message saying
 * what would fit (ldm_inpaint's or ldm_upscale's own). LDM_ERROR_ARGUMENT for a model that
 * does not do `task` or a size out of range. For inpainting, the size the model sees (a
 * region's crop after its working size: ldm_region_model_size). `plan` may be NULL. */
gboolean ldm_model_plan (const LdmModel *model, LdmTask task, int width, int height,
                         const LdmSampleParams *params, LdmTilePlan *plan, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LdmEngine, ldm_engine_free)

/* ------------------------------------------------------------- regions
 * Inpainting a region of a larger image (region.c): what the GIMP plug-in does with a
 * selection, without GIMP. Rectangles are in the caller's pixel coordinates. */

typedef struct {
    int context_padding; /* pixels of surrounding image the model sees around the mask */
    int working_size;    /* longest side the crop is processed at; larger crops are scaled */
    int mask_grow;       /* the mask is dilated by this many pixels (a disk) */
    int mask_blur;       /* the layer mask is softened over this many pixels (Gaussian) */
} LdmRegionParams;

#define LDM_REGION_MAX_GROW        256
#define LDM_REGION_MAX_BLUR        256
#define LDM_REGION_MIN_WORKING_SIZE 32

/* Defaults: context 64, working size 512, grow 4, blur 8. */
void     ldm_region_params_init (LdmRegionParams *params);

/* The crop the model sees for a mask whose non-zero pixels lie inside `bounds`: bounds grown
 * by mask_grow + mask_blur + context_padding on every side, clamped to `limits`. FALSE when
 * bounds and limits do not overlap (nothing to inpaint). */
gboolean ldm_region_crop        (const LdmRegionParams *params, LdmRect bounds, LdmRect limits,
                                 LdmRect *crop);

/* The size a width x height crop is inpainted at: scaled (aspect kept) so that its longest
 * side is working_size when longer, else its own. */
void     ldm_region_model_size  (const LdmRegionParams *params, int width, int height,
                                 int *model_width, int *model_height);

/* Mask and image operations (image_ops.c). Masks are width x height floats in [0, 1],
 * changed in place. grow: the maximum over a disk of `radius` pixels; blur: a Gaussian of
 * standard deviation radius / 3, cut at `radius`, edges replicated. FALSE only when memory
 * runs out. */
gboolean ldm_mask_grow          (float *mask, int width, int height, int radius, GError **error);
gboolean ldm_mask_blur          (float *mask, int width, int height, int radius, GError **error);

/* A resized copy of an 8-bit image: each axis shrunk by area averaging or enlarged bilinearly
 * (pixel centres aligned), rounded to the nearest level. */
gboolean ldm_image_resize       (const LdmImage *src, int width, int height, LdmImage *dst,
                                 GError **error);

typedef struct {
    LdmImage image;       /* crop size: generated pixels where fill is set, the input's elsewhere */
    uint8_t *fill;        /* crop size: 255 where the model's result is used, else 0 */
    float   *layer_mask;  /* crop size: the selection grown and blurred, in [0, 1] */
    int      model_width, model_height; /* the size the model ran at */
} LdmRegionResult;

void     ldm_region_result_clear (LdmRegionResult *result);

/* Inpaints a crop (grey, RGB or RGBA) under a soft selection (crop-size floats in [0, 1]):
 *   grown = grow (selection, mask_grow); layer_mask = blur (grown, mask_blur)
 *   fill = grow (selection, mask_grow + mask_blur) >= 0.5 (covers the whole soft edge)
 *   the crop (and fill) scaled to fit working_size when larger, inpainted, scaled back;
 * every pixel outside `fill` is the input's, bit for bit. With grow 0, blur 0 and a crop that
 * fits, the result equals ldm_inpaint on the crop with mask = selection >= 0.5. */
gboolean ldm_inpaint_region     (LdmEngine *engine, const LdmImage *image, const float *selection,
                                 const LdmRegionParams *params, const LdmSampleParams *sample,
                                 LdmRegionResult *result, GError **error);

/* ------------------------------------------------------ text prompts (CLIP) */

/* CLIP's byte-level BPE tokenizer as Stable Diffusion 1.x conditions on it. */
typedef struct LdmTokenizer LdmTokenizer;

#define LDM_CLIP_CONTEXT_LENGTH 77 /* ids per row: <|startoftext|>, 75 ids, <|endoftext|>... */
#define LDM_CLIP_CHUNK_TOKENS   75
#define LDM_BUILTIN_TOKENIZER   "bpe_simple_vocab_16e6.txt.gz" /* data/tokenizers/clip/ */

/* Reads a tokenizer. PATH (when not NULL): a merges file (OpenAI's .txt.gz or a diffusers
 * merges.txt, with the vocab.json beside a merges.txt) or a folder holding merges.txt
 * (+ vocab.json), tokenizer/merges.txt or the built-in file. Otherwise MODEL_PATH's
 * tokenizer/ folder when it has one (a diffusers layout), else the built-in merges
 * (ldm_tokenizer_builtin_find (NULL)). Damaged or hostile files get LDM_ERROR_FORMAT. */
LdmTokenizer *ldm_tokenizer_new        (const char *path, const char *model_path,
                                        GError **error);
void          ldm_tokenizer_free       (LdmTokenizer *tokenizer);
/* Where it was read from (for messages). */
const char   *ldm_tokenizer_source     (const LdmTokenizer *tokenizer);
/* Largest id + 1: the text encoder's token embedding must have at least as many rows. */
int           ldm_tokenizer_vocab_size (const LdmTokenizer *tokenizer);
int32_t       ldm_tokenizer_start_id   (const LdmTokenizer *tokenizer); /* 49406 for CLIP */
int32_t       ldm_tokenizer_end_id     (const LdmTokenizer *tokenizer); /* 49407, also padding */

/* All BPE ids of TEXT (UTF-8, at most 1 MiB; else LDM_ERROR_ARGUMENT), without start and
 * end, never truncated; *n_ids may be 0. g_free the result. Threads may share a tokenizer. */
int32_t      *ldm_tokenizer_encode     (LdmTokenizer *tokenizer, const char *text,
                                        size_t *n_ids, GError **error);
/* TEXT as rows of LDM_CLIP_CONTEXT_LENGTH ids: start, up to 75 ids, end, padded with end.
 * TRUNCATE: one row of the first 75 ids (Stable Diffusion's own behaviour); otherwise
 * ceil(n / 75) rows, at least one, each 75 ids of the text in order (the webui's chunks, whose
 * encoder outputs are concatenated). *n_rows gets the count; g_free the result. */
int32_t      *ldm_tokenizer_encode_rows (LdmTokenizer *tokenizer, const char *text,
                                         bool truncate, size_t *n_rows, GError **error);

/* What the tokenizer reads of TEXT (newly allocated): CLIP's cleaning, as OpenAI's
 * simple_tokenizer with ftfy replaced by NFC: NFC, HTML entities unescaped twice, stripped,
 * runs of white space to one space, lower case (Python's rules, no locale). */
char         *ldm_tokenizer_clean_text (const char *text, GError **error);
/* The text of token ID (newly allocated; NULL if no token has it): its bytes, which may be
 * part of a UTF-8 character, then "</w>" when it ends a word. */
char         *ldm_tokenizer_token_text (const LdmTokenizer *tokenizer, int32_t id);

/* The path of the built-in merges file (newly allocated): $GIMP_LDM_TOKENIZER_DIR when set is
 * the only folder searched; otherwise the first of DIRS (NULL-terminated, may be NULL), the
 * installed data folder and the source tree's data/tokenizers/clip that has it. */
char         *ldm_tokenizer_builtin_find (const char *const *dirs, GError **error);
/* MODEL_PATH's tokenizer folder (<model folder>/tokenizer with a merges.txt, the model
 * folder being MODEL_PATH itself when it is one) or NULL. Newly allocated. */
char         *ldm_tokenizer_find_beside_model (const char *model_path);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LdmTokenizer, ldm_tokenizer_free)

/* ------------------------------------------------------ brush strokes (strokes.c)
 * What the inpainting brush needs that is not GIMP's: which pixels of a strokes layer changed
 * since the last look, grouped into regions, a queue of dirty regions, and the crop with
 * context around a region (the same crop the Inpaint Selection filter makes). Coordinates are
 * the layer's pixels; the layer's alpha is its coverage (8-bit, 0 = no paint). */

typedef struct LdmStrokeTracker LdmStrokeTracker;

/* Two groups of changed pixels merge when the gap between their boxes (pixels strictly
 * between them, the larger of the horizontal and vertical gap) is at most this. */
#define LDM_STROKE_MERGE_DISTANCE 16
/* Beyond this many separate groups in one update, the update is one region (its total box). */
#define LDM_STROKE_MAX_GROUPS     4096

typedef struct {
    LdmRect box;        /* the bounding box of the region's changed pixels */
    int     painted;    /* pixels whose coverage rose (paint added) */
    int     erased;     /* pixels whose coverage fell: the original must come back there */
} LdmStrokeRegion;

/* A tracker for a width x height layer (each 1..65536) whose last seen coverage is all 0
 * (a new, empty strokes layer); merge_distance >= 0 (LDM_STROKE_MERGE_DISTANCE). */
LdmStrokeTracker *ldm_stroke_tracker_new    (int width, int height, int merge_distance,
                                             GError **error);
void              ldm_stroke_tracker_free   (LdmStrokeTracker *tracker);

/* Compares ALPHA (height rows of width bytes, `stride` bytes apart, stride >= width) with the
 * last seen coverage, remembers ALPHA, and writes the regions of the changed pixels (any
 * difference counts): boxes of 8-connected changes, merged while two are within the merge
 * distance, sorted by top edge, then left edge. When more than
 * `max` (>= 1) regions, or more than LDM_STROKE_MAX_GROUPS groups, result, *n_out is 1: the
 * box of every change. No change: *n_out = 0. On error the last seen coverage is kept. */
gboolean ldm_stroke_tracker_update    (LdmStrokeTracker *tracker, const uint8_t *alpha,
                                       int stride, LdmStrokeRegion *regions_out, int max,
                                       int *n_out, GError **error);
/* Sets the last seen coverage without reporting anything (a strokes layer that already has
 * paint, or after an undo the caller handled itself). */
gboolean ldm_stroke_tracker_reset     (LdmStrokeTracker *tracker, const uint8_t *alpha,
                                       int stride, GError **error);
/* The last seen coverage inside CROP (which must lie inside the layer) as a crop-size
 * selection in [0, 1] (coverage / 255), what ldm_inpaint_region takes. */
gboolean ldm_stroke_tracker_selection (const LdmStrokeTracker *tracker, LdmRect crop,
                                       float *selection, GError **error);

/* A queue of dirty regions, an array of *n (<= max) rectangles the caller owns: RECT joins
 * it. Every queued rectangle within `merge_distance` of it (0: overlapping or touching) is
 * merged into it, again while the grown one reaches others; the result takes the place of
 * the earliest merged one (so a growing region keeps its turn), else it goes last. A full
 * queue grows its last rectangle by RECT. Returns the index that now holds RECT, or -1 (and
 * the error) for an empty RECT, a negative distance or a bad queue. */
int      ldm_stroke_queue_add         (LdmRect *queue, int *n, int max, LdmRect rect,
                                       int merge_distance, GError **error);

/* The crop with context the engine gets for REGION of a width x height layer: exactly
 * ldm_region_crop (params, region, {0, 0, width, height}), the Inpaint Selection filter's
 * crop for a selection with these bounds. FALSE (crop zeroed) when REGION is empty or off
 * the layer. */
gboolean ldm_stroke_region_crop       (const LdmRegionParams *params, LdmRect region, int width,
                                       int height, LdmRect *crop);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LdmStrokeTracker, ldm_stroke_tracker_free)

/* ------------------------------------------------- the brush's engine (brush.c)
 * A persistent worker for the inpainting brush: one thread that loads an inpainting model once
 * and then inpaints the regions it is given, one at a time, keeping the engine between them.
 * No GIMP, no GTK: the caller reads the pixels and writes the results. */

typedef enum {
    LDM_BRUSH_FAST,    /* few steps, little context, a small working size: while painting */
    LDM_BRUSH_QUALITY, /* the Inpaint Selection filter's defaults */
} LdmBrushMode;

const char *ldm_brush_mode_name  (LdmBrushMode mode); /* "fast", "quality" */
gboolean    ldm_brush_mode_parse (const char *name, LdmBrushMode *mode);

/* The one source of each mode's settings. Quality: ldm_sample_params_init (inpainting) and
 * ldm_region_params_init. Fast: the same with 4 steps, context 24, working size 256, blur 4. */
void ldm_brush_params_init (LdmBrushMode mode, LdmSampleParams *sample, LdmRegionParams *region);

/* A brush job's crop sides are multiples of this (within the layer and the working size). */
#define LDM_BRUSH_CROP_BUCKET 32

/* One region to inpaint. ldm_brush_job_new fills `crop` and `inner` and allocates `selection`;
 * the caller fills `image` (the crop's original pixels, RGBA, owned by the job) and
 * `selection` (the strokes' coverage on the crop, ldm_stroke_tracker_selection), then hands
 * the job to the worker, which fills the results. */
typedef struct {
    uint64_t        id;          /* the caller's */
    LdmRect         box;         /* the changed pixels' box (layer coordinates) */
    LdmRect         crop;        /* what the model sees: box + grow + blur + context, clamped,
                                  * its sides then rounded up to a multiple of
                                  * LDM_BRUSH_CROP_BUCKET within the layer and the working
                                  * size (more context, and model shapes that repeat) */
    LdmRect         inner;       /* what the result covers: box + grow + blur, clamped; every
                                  * pixel the strokes inside the box can reach */
    LdmImage        image;       /* crop size, RGBA */
    float          *selection;   /* crop size, in [0, 1] */
    LdmSampleParams sample;      /* its progress fields are the worker's; keep = inner (in
                                  * the crop's coordinates): only it is decoded */
    LdmRegionParams region;
    /* results */
    gboolean        ok;
    GError         *error;       /* when not ok; LDM_ERROR_CANCELLED after a cancel */
    uint8_t        *rgba;        /* inner size, RGBA: the generated pixels where the fill is,
                                  * alpha = the layer mask x their alpha; 0 0 0 0 elsewhere
                                  * (no stroke left there: the original shows again) */
    gboolean        empty;       /* no pixel at least half covered: rgba is all 0, no model run */
    int             model_width, model_height;
    /* monotonic microseconds: taken by the worker, ended, first and last step */
    gint64          started, first_step, last_step, finished;
} LdmBrushJob;

LdmBrushJob *ldm_brush_job_new  (LdmRect box, int layer_width, int layer_height,
                                 const LdmSampleParams *sample, const LdmRegionParams *region,
                                 GError **error);
void         ldm_brush_job_free (LdmBrushJob *job);

/* The inner-size RGBA pixels of an inpainted crop (see LdmBrushJob.rgba). */
gboolean ldm_brush_region_pixels (const LdmRegionResult *result, LdmRect crop, LdmRect inner,
                                  uint8_t *rgba, GError **error);

typedef struct LdmBrushWorker LdmBrushWorker;

/* Starts the worker thread, which loads MODEL_PATH (an inpainting model) first. A model that
 * cannot be loaded fails every job with the loader's error (ldm_brush_worker_status too). */
LdmBrushWorker *ldm_brush_worker_new    (const char *model_path, GError **error);
/* Stops the running job at its next step, returns the queued ones as cancelled, joins. */
void            ldm_brush_worker_free   (LdmBrushWorker *worker);
/* Queues JOB (the worker owns it until ldm_brush_worker_take gives it back). */
void            ldm_brush_worker_submit (LdmBrushWorker *worker, LdmBrushJob *job);
/* The running job stops at its next step; queued jobs finish as cancelled. */
void            ldm_brush_worker_cancel (LdmBrushWorker *worker);
/* The oldest finished job (the caller owns it), or NULL: at once when timeout_us is 0, after
 * that long at most, or (-1) when one finishes. */
LdmBrushJob    *ldm_brush_worker_take   (LdmBrushWorker *worker, gint64 timeout_us);

typedef struct {
    gboolean loaded;       /* the engine is ready */
    gboolean failed;       /* the model could not be loaded (message: ldm_brush_worker_status's) */
    int      busy;         /* jobs queued or running */
    uint64_t running_id;   /* of the running job (valid when step/steps > 0 or busy) */
    int      step, steps;  /* of the running job */
} LdmBrushStatus;

/* Where the worker is; *message (may be NULL) gets the load error's text (g_free). */
void            ldm_brush_worker_status (LdmBrushWorker *worker, LdmBrushStatus *status,
                                         char **message);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (LdmBrushJob, ldm_brush_job_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (LdmBrushWorker, ldm_brush_worker_free)

/* ------------------------------------------------------- benchmark (bench.c)
 * The networks of a model timed on fixed inputs that another implementation can rebuild
 * (tools/bench/compare runs PyTorch on them; NCHW indices i within one sample):
 *   U-Net: x = sin(0.001 i) for each sample, t = 500; the batch is the CFG pair [uncond, cond]
 *     (2 samples) for a model with cross-attention, as the sampler runs it, else 1 sample;
 *     context sample b, token k, channel d: sin(0.01 ((b * 77 + k) * context_dim + d)).
 *   encode: an image of the latent's size times the autoencoder's factor, sin(0.001 i)
 *     (encoder + quant_conv; KL: the moments [mean | logvar]).
 *   decode: a latent of embed_dim channels, sin(0.001 i) (post_quant_conv + decoder, no
 *     quantisation).
 *   text (a model with a text encoder): the CFG pair of id rows, the empty prompt
 *     [49406, 49407 x 76] and [49406, 320 + 311 k for k < 20, 49407 x 56].
 * Each part runs once to warm up (oneDNN makes its primitives), then `repeat` times. */

typedef enum {
    LDM_BENCH_UNET,
    LDM_BENCH_ENCODE,
    LDM_BENCH_DECODE,
    LDM_BENCH_TEXT,
    LDM_BENCH_N_PARTS
} LdmBenchPart;

const char *ldm_bench_part_name (LdmBenchPart part); /* "unet", "encode", "decode", "text" */

typedef struct {
    int      latent_h, latent_w; /* 0: the model's training latent size (image_size) */
    int      repeat;             /* timed runs after the warm-up, >= 1 */
    LdmPrecision precision;      /* as ldm_engine_new's */
    gboolean keep_outputs;       /* keep each part's last output (LdmBenchTiming.output) */
    unsigned parts;              /* the parts to run, bits 1 << LdmBenchPart; 0: all */
} LdmBenchParams;

typedef struct {
    gboolean present;       /* the model has this part (text: a text encoder) */
    double   first_seconds; /* the warm-up run */
    double   seconds;       /* median of the timed runs */
    double   gflop;         /* one run's convolutions and matrix products (arch/flops.h) */
    float   *output;        /* keep_outputs: the last run's output, NCHW (g_free) */
    size_t   output_len;
    int      output_shape[4];
} LdmBenchTiming;

typedef struct {
    int            latent_h, latent_w, image_h, image_w;
    int            unet_batch, context_tokens;
    LdmPrecision   precision;    /* what ran: LDM_PRECISION_FP32 or LDM_PRECISION_BF16 */
    double         load_seconds; /* all networks built, weights reordered */
    LdmBenchTiming part[LDM_BENCH_N_PARTS];
} LdmBenchResult;

gboolean ldm_model_bench        (const LdmModel *model, const LdmBenchParams *params,
                                 LdmBenchResult *result, GError **error);
void     ldm_bench_result_clear (LdmBenchResult *result);

#pragma GCC visibility pop

G_END_DECLS
