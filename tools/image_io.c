/* image_io.c: PNG (libpng) and JPEG (libjpeg) for the `ldm` program. See image_io.h.
 * libpng's low-level API is used because its simplified API converts samples (16-bit files
 * without a gAMA chunk are taken as linear light and changed on the way to 8 bits). */
#include "image_io.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h> /* needs stdio.h first */
#include <png.h>

static void
set_io_error (GError **error, const char *path, const char *what)
{
    g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT, "%s: %s", path, what);
}

/* The size a header claims, checked before any pixel buffer is allocated (a 60000x60000 PNG
 * or JPEG header is a few bytes): the engine's own refusal (LDM_IMAGE_MAX_SIDE, the same
 * message as its check), and the whole buffer, `channels` samples of `sample_bytes` a pixel,
 * must fit a size_t. `what` is "image" or "mask". */
static gboolean
check_header_size (const char *path, const char *what, uint32_t width, uint32_t height,
                   int channels, int sample_bytes, GError **error)
{
    if (width == 0 || height == 0) {
        set_io_error (error, path, "the header gives an empty image");
        return FALSE;
    }
    size_t row_bytes, bytes;
    if (width > LDM_IMAGE_MAX_SIDE || height > LDM_IMAGE_MAX_SIDE
        || !g_size_checked_mul (&row_bytes, width, (size_t) channels * sample_bytes)
        || !g_size_checked_mul (&bytes, row_bytes, height)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "%s: the %s is %" G_GUINT32_FORMAT "x%" G_GUINT32_FORMAT ": at most %d "
                     "pixels a side are supported", path, what, width, height,
                     LDM_IMAGE_MAX_SIDE);
        return FALSE;
    }
    return TRUE;
}

void
image_file_clear (ImageFile *file)
{
    ldm_image_clear (&file->image);
    g_clear_pointer (&file->deep, g_free);
}

/* ------------------------------------------------------------------ EXIF */

static unsigned
exif_u16 (const uint8_t *p, gboolean le)
{
    return le ? p[0] | (unsigned) p[1] << 8 : (unsigned) p[0] << 8 | p[1];
}

static uint32_t
exif_u32 (const uint8_t *p, gboolean le)
{
    return le ? p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24
              : (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

/* The Orientation tag (0x0112) of an EXIF block (a TIFF header, then IFD0); 1 (as stored)
 * when absent or damaged. */
static int
exif_orientation (const uint8_t *p, size_t n)
{
    if (n < 8 || !((p[0] == 'I' && p[1] == 'I') || (p[0] == 'M' && p[1] == 'M')))
        return 1;
    gboolean le = p[0] == 'I';
    if (exif_u16 (p + 2, le) != 42)
        return 1;
    uint32_t ifd = exif_u32 (p + 4, le);
    if (ifd > n - 2)
        return 1;
    unsigned count = exif_u16 (p + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t entry = ifd + 2 + (size_t) 12 * i;
        if (entry + 12 > n)
            break;
        if (exif_u16 (p + entry, le) == 0x0112 && exif_u16 (p + entry + 2, le) == 3) {
            unsigned v = exif_u16 (p + entry + 8, le);
            return v >= 1 && v <= 8 ? (int) v : 1;
        }
    }
    return 1;
}

/* The stored pixel shown at (x, y) of the turned picture, for EXIF orientation o. */
static void
orientation_source (int o, int w, int h, int x, int y, int *sx, int *sy)
{
    switch (o) {
    case 2: *sx = w - 1 - x; *sy = y;         break; /* mirrored */
    case 3: *sx = w - 1 - x; *sy = h - 1 - y; break; /* turned 180 */
    case 4: *sx = x;         *sy = h - 1 - y; break; /* flipped */
    case 5: *sx = y;         *sy = x;         break; /* transposed */
    case 6: *sx = y;         *sy = h - 1 - x; break; /* to be turned 90 clockwise */
    case 7: *sx = w - 1 - y; *sy = h - 1 - x; break; /* transversed */
    case 8: *sx = w - 1 - y; *sy = x;         break; /* to be turned 90 anticlockwise */
    default: *sx = x;        *sy = y;         break;
    }
}

#define DEFINE_TURN(name, type)                                                               \
    static type *name (const type *src, int w, int h, int c, int o)                          \
    {                                                                                         \
        gboolean swap = o >= 5;                                                               \
        int ow = swap ? h : w, oh = swap ? w : h;                                             \
        type *dst = g_try_malloc_n ((size_t) w * h, (size_t) c * sizeof (type));             \
        if (!dst)                                                                             \
            return NULL;                                                                      \
        for (int y = 0; y < oh; y++)                                                          \
            for (int x = 0; x < ow; x++) {                                                    \
                int sx, sy;                                                                   \
                orientation_source (o, w, h, x, y, &sx, &sy);                                 \
                memcpy (dst + ((size_t) y * ow + x) * c, src + ((size_t) sy * w + sx) * c,    \
                        (size_t) c * sizeof (type));                                          \
            }                                                                                 \
        return dst;                                                                           \
    }
DEFINE_TURN (turn_u8, uint8_t)
DEFINE_TURN (turn_u16, uint16_t)

static gboolean
apply_orientation (ImageFile *file, int o, const char *path, GError **error)
{
    if (o <= 1)
        return TRUE;
    LdmImage *im = &file->image;
    uint8_t *pixels = turn_u8 (im->pixels, im->width, im->height, im->channels, o);
    uint16_t *deep = file->deep ? turn_u16 (file->deep, im->width, im->height, im->channels, o)
                                : NULL;
    if (!pixels || (file->deep && !deep)) {
        g_free (pixels);
        g_free (deep);
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                     "%s: not enough memory to turn the image", path);
        return FALSE;
    }
    g_free (im->pixels);
    im->pixels = pixels;
    g_free (file->deep);
    file->deep = deep;
    if (o >= 5) {
        int t = im->width;
        im->width = im->height;
        im->height = t;
    }
    return TRUE;
}

/* ------------------------------------------------------------------- PNG */

typedef struct {
    char message[256];
} PngError;

static void
png_on_error (png_structp png, png_const_charp message)
{
    PngError *e = png_get_error_ptr (png);
    g_strlcpy (e->message, message, sizeof e->message);
    png_longjmp (png, 1);
}

static void
png_on_warning (png_structp png, png_const_charp message)
{
    (void) png;
    (void) message; /* benign: a damaged ancillary chunk is skipped */
}

static gboolean
load_png (const char *path, const char *what, FILE *fp, ImageFile *file, GError **error)
{
    PngError err = { "damaged PNG" };
    png_structp png = png_create_read_struct (PNG_LIBPNG_VER_STRING, &err, png_on_error,
                                              png_on_warning);
    png_infop info = png ? png_create_info_struct (png) : NULL;
    if (!info) {
        png_destroy_read_struct (&png, NULL, NULL);
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "%s: not enough memory", path);
        return FALSE;
    }
    uint8_t *volatile raw = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp (png_jmpbuf (png))) {
        png_destroy_read_struct (&png, &info, NULL);
        g_free (raw);
        g_free (rows);
        set_io_error (error, path, err.message);
        return FALSE;
    }
    png_init_io (png, fp);
    /* libpng's own limits only as far as the format's (2^31 - 1): the sides are checked below
     * with the engine's message; png_read_info allocates nothing that grows with them. */
    png_set_user_limits (png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_read_info (png, info);
    png_uint_32 w = png_get_image_width (png, info), h = png_get_image_height (png, info);
    /* the largest layout the reading may produce: RGBA, 16 bits (libpng's row buffers
     * are sized in png_read_update_info, below) */
    if (!check_header_size (path, what, w, h, 4, 2, error)) {
        png_destroy_read_struct (&png, &info, NULL);
        return FALSE;
    }
    int type = png_get_color_type (png, info);
    gboolean alpha = (type & PNG_COLOR_MASK_ALPHA) || png_get_valid (png, info, PNG_INFO_tRNS);
    png_set_expand (png); /* palette -> RGB, 1-4 bit grey -> 8 bits, tRNS -> alpha */
    if (alpha && !(type & PNG_COLOR_MASK_COLOR))
        png_set_gray_to_rgb (png); /* grey + alpha -> RGBA */
    png_set_interlace_handling (png);
    png_read_update_info (png, info);
    int channels = png_get_channels (png, info), depth = png_get_bit_depth (png, info);
    size_t row_bytes = png_get_rowbytes (png, info);
    if ((channels != 1 && channels != 3 && channels != 4) || (depth != 8 && depth != 16)
        || row_bytes != (size_t) w * channels * (depth / 8)) { /* no overflow: checked above */
        png_destroy_read_struct (&png, &info, NULL);
        set_io_error (error, path, "unsupported PNG layout");
        return FALSE;
    }
    raw = g_try_malloc_n (h, row_bytes);
    rows = g_try_new (png_bytep, h);
    if (!raw || !rows) {
        png_destroy_read_struct (&png, &info, NULL);
        g_free (raw);
        g_free (rows);
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                     "%s: not enough memory for a %ux%u image", path, w, h);
        return FALSE;
    }
    for (png_uint_32 y = 0; y < h; y++)
        rows[y] = raw + (size_t) y * row_bytes;
    png_read_image (png, rows);
    png_read_end (png, info); /* an eXIf chunk may follow the pixels */
    int orientation = 1;
    png_uint_32 exif_len = 0;
    png_bytep exif = NULL;
    if (png_get_eXIf_1 (png, info, &exif_len, &exif) && exif)
        orientation = exif_orientation (exif, exif_len);
    png_destroy_read_struct (&png, &info, NULL);
    g_free (rows);

    size_t n = (size_t) w * h * channels;
    uint8_t *pixels = raw;
    uint16_t *deep = NULL;
    if (depth == 16) {
        pixels = g_try_malloc (n);
        deep = g_try_new (uint16_t, n);
        if (!pixels || !deep) {
            g_free (pixels);
            g_free (deep);
            g_free (raw);
            g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                         "%s: not enough memory for a %ux%u image", path, w, h);
            return FALSE;
        }
        for (size_t i = 0; i < n; i++) {
            deep[i] = (uint16_t) (raw[2 * i] << 8 | raw[2 * i + 1]);
            pixels[i] = (uint8_t) ((deep[i] * 255u + 32767u) / 65535u);
        }
        g_free (raw);
    }
    *file = (ImageFile) { { (int) w, (int) h, channels, pixels }, deep };
    if (!apply_orientation (file, orientation, path, error)) {
        image_file_clear (file);
        return FALSE;
    }
    return TRUE;
}

static gboolean
write_png (FILE *fp, const LdmImage *image, const uint16_t *deep, char *message, size_t size)
{
    PngError err = { "cannot write the PNG" };
    png_structp png = png_create_write_struct (PNG_LIBPNG_VER_STRING, &err, png_on_error,
                                               png_on_warning);
    png_infop info = png ? png_create_info_struct (png) : NULL;
    uint8_t *volatile row = NULL;
    if (!info) {
        png_destroy_write_struct (&png, NULL);
        g_strlcpy (message, "not enough memory", size);
        return FALSE;
    }
    if (setjmp (png_jmpbuf (png))) {
        png_destroy_write_struct (&png, &info);
        g_free (row);
        g_strlcpy (message, err.message, size);
        return FALSE;
    }
    int c = image->channels, bytes = deep ? 2 : 1;
    png_init_io (png, fp);
    png_set_IHDR (png, info, (png_uint_32) image->width, (png_uint_32) image->height,
                  8 * bytes, c == 4 ? PNG_COLOR_TYPE_RGBA : c == 3 ? PNG_COLOR_TYPE_RGB
                                                                   : PNG_COLOR_TYPE_GRAY,
                  PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info (png, info);
    size_t samples = (size_t) image->width * c;
    row = g_try_malloc (samples * bytes);
    if (!row)
        png_error (png, "not enough memory");
    for (int y = 0; y < image->height; y++) {
        if (deep) {
            const uint16_t *src = deep + (size_t) y * samples;
            for (size_t i = 0; i < samples; i++) {
                row[2 * i] = (uint8_t) (src[i] >> 8);
                row[2 * i + 1] = (uint8_t) src[i];
            }
        } else {
            memcpy (row, image->pixels + (size_t) y * samples, samples);
        }
        png_write_row (png, row);
    }
    png_write_end (png, info);
    png_destroy_write_struct (&png, &info);
    g_free (row);
    return TRUE;
}

/* ------------------------------------------------------------------ JPEG */

typedef struct {
    struct jpeg_error_mgr manager;
    jmp_buf               jump;
    char                  message[JMSG_LENGTH_MAX];
} JpegError;

static void
jpeg_fail (j_common_ptr cinfo)
{
    JpegError *e = (JpegError *) cinfo->err;
    cinfo->err->format_message (cinfo, e->message);
    longjmp (e->jump, 1);
}

static int
jpeg_exif_orientation (j_decompress_ptr cinfo)
{
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6
            && memcmp (m->data, "Exif\0\0", 6) == 0)
            return exif_orientation (m->data + 6, m->data_length - 6);
    return 1;
}

static gboolean
load_jpeg (const char *path, const char *what, FILE *fp, ImageFile *file, GError **error)
{
    struct jpeg_decompress_struct cinfo;
    JpegError jerr;
    uint8_t *volatile pixels = NULL;
    cinfo.err = jpeg_std_error (&jerr.manager);
    jerr.manager.error_exit = jpeg_fail;
    if (setjmp (jerr.jump)) {
        jpeg_destroy_decompress (&cinfo);
        g_free (pixels);
        set_io_error (error, path, jerr.message);
        return FALSE;
    }
    jpeg_create_decompress (&cinfo);
    jpeg_stdio_src (&cinfo, fp);
    jpeg_save_markers (&cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header (&cinfo, TRUE);
    /* before jpeg_start_decompress, which allocates the decoder's buffers (for a progressive
     * file, the coefficients of the whole image) */
    if (!check_header_size (path, what, cinfo.image_width, cinfo.image_height,
                            cinfo.num_components == 1 ? 1 : 3, 1, error)) {
        jpeg_destroy_decompress (&cinfo);
        return FALSE;
    }
    int orientation = jpeg_exif_orientation (&cinfo);
    cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress (&cinfo);
    int w = (int) cinfo.output_width, h = (int) cinfo.output_height, c = cinfo.output_components;
    pixels = g_try_malloc_n ((size_t) w * h, c);
    if (!pixels) {
        jpeg_destroy_decompress (&cinfo);
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY,
                     "%s: not enough memory for a %dx%d image", path, w, h);
        return FALSE;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t) cinfo.output_scanline * w * c;
        jpeg_read_scanlines (&cinfo, &row, 1);
    }
    jpeg_finish_decompress (&cinfo);
    jpeg_destroy_decompress (&cinfo);
    *file = (ImageFile) { { w, h, c, pixels }, NULL };
    if (!apply_orientation (file, orientation, path, error)) {
        image_file_clear (file);
        return FALSE;
    }
    return TRUE;
}

static gboolean
write_jpeg (FILE *fp, const LdmImage *image, char *message, size_t size)
{
    if (image->channels != 1 && image->channels != 3) {
        g_strlcpy (message, "a JPEG cannot hold an alpha channel (write a .png)", size);
        return FALSE;
    }
    struct jpeg_compress_struct cinfo;
    JpegError jerr;
    cinfo.err = jpeg_std_error (&jerr.manager);
    jerr.manager.error_exit = jpeg_fail;
    if (setjmp (jerr.jump)) {
        jpeg_destroy_compress (&cinfo);
        g_strlcpy (message, jerr.message, size);
        return FALSE;
    }
    jpeg_create_compress (&cinfo);
    jpeg_stdio_dest (&cinfo, fp);
    cinfo.image_width = (JDIMENSION) image->width;
    cinfo.image_height = (JDIMENSION) image->height;
    cinfo.input_components = image->channels;
    cinfo.in_color_space = image->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults (&cinfo);
    jpeg_set_quality (&cinfo, 95, TRUE);
    jpeg_start_compress (&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = image->pixels + (size_t) cinfo.next_scanline * image->width
                                           * image->channels;
        jpeg_write_scanlines (&cinfo, &row, 1);
    }
    jpeg_finish_compress (&cinfo);
    jpeg_destroy_compress (&cinfo);
    return TRUE;
}

/* ------------------------------------------------------------- reading */

/* `what` ("image", "mask") names the picture in a size refusal. */
static gboolean
load_image_file (const char *path, const char *what, ImageFile *file, GError **error)
{
    *file = (ImageFile) { 0 };
    FILE *fp = fopen (path, "rb");
    if (!fp) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_IO, "%s: %s", path, g_strerror (errno));
        return FALSE;
    }
    uint8_t magic[8] = { 0 };
    size_t got = fread (magic, 1, sizeof magic, fp);
    rewind (fp);
    gboolean ok;
    if (got == 8 && png_sig_cmp (magic, 0, 8) == 0) {
        ok = load_png (path, what, fp, file, error);
    } else if (got >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff) {
        ok = load_jpeg (path, what, fp, file, error);
    } else {
        set_io_error (error, path, "not a PNG or JPEG image");
        ok = FALSE;
    }
    fclose (fp);
    return ok;
}

gboolean
image_load (const char *path, ImageFile *file, GError **error)
{
    return load_image_file (path, "image", file, error);
}

gboolean
image_load_mask (const char *path, LdmImage *mask, GError **error)
{
    ImageFile file;
    if (!load_image_file (path, "mask", &file, error))
        return FALSE;
    LdmImage *img = &file.image;
    g_clear_pointer (&file.deep, g_free);
    if (img->channels == 1) {
        *mask = *img;
        return TRUE;
    }
    size_t n = (size_t) img->width * img->height;
    uint8_t *grey = g_try_malloc (n);
    if (!grey) {
        image_file_clear (&file);
        g_set_error (error, LDM_ERROR, LDM_ERROR_NO_MEMORY, "%s: not enough memory", path);
        return FALSE;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = img->pixels + i * img->channels;
        /* Rec. 709 luma of the stored (gamma-encoded) values, as GIMP's "Luminance" mode */
        unsigned luma = (2126u * p[0] + 7152u * p[1] + 722u * p[2] + 5000u) / 10000u;
        grey[i] = (uint8_t) (img->channels == 4 ? (luma * p[3] + 127u) / 255u : luma);
    }
    *mask = (LdmImage) { img->width, img->height, 1, grey };
    image_file_clear (&file);
    return TRUE;
}

/* ------------------------------------------------------------- writing */

/* The file a path names once symbolic links are followed (a new file: the path itself). */
static char *
resolve_target (const char *path)
{
    char *real = realpath (path, NULL);
    if (!real)
        return g_strdup (path);
    char *copy = g_strdup (real);
    free (real);
    return copy;
}

gboolean
image_check_output (const char *path, ImageType *type, GError **error)
{
    g_autofree char *base = g_path_get_basename (path);
    const char *dot = strrchr (base, '.');
    if (!dot || dot == base || g_ascii_strcasecmp (dot, ".png") == 0) {
        *type = IMAGE_PNG;
    } else if (g_ascii_strcasecmp (dot, ".jpg") == 0 || g_ascii_strcasecmp (dot, ".jpeg") == 0) {
        *type = IMAGE_JPEG;
    } else {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "%s: cannot write '%s' files: the output must be .png or .jpg", path, dot);
        return FALSE;
    }
    g_autofree char *target = resolve_target (path);
    struct stat st;
    if (stat (target, &st) == 0) {
        if (S_ISDIR (st.st_mode)) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                         "%s is a folder: the output must be a file", path);
            return FALSE;
        }
        if (access (target, W_OK) != 0) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "%s cannot be written: %s", path,
                         g_strerror (errno));
            return FALSE;
        }
        if (!S_ISREG (st.st_mode))
            return TRUE; /* a device or a pipe is written in place */
    }
    g_autofree char *dir = g_path_get_dirname (target);
    if (stat (dir, &st) != 0 || !S_ISDIR (st.st_mode)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "%s cannot be written: the folder %s does not exist", path, dir);
        return FALSE;
    }
    if (access (dir, W_OK | X_OK) != 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "%s cannot be written: no write permission in the folder %s", path, dir);
        return FALSE;
    }
    return TRUE;
}

static gboolean
write_stream (FILE *fp, ImageType type, const LdmImage *image, const uint16_t *deep,
              char *message, size_t size)
{
    errno = 0;
    gboolean ok = type == IMAGE_JPEG ? write_jpeg (fp, image, message, size)
                                     : write_png (fp, image, deep, message, size);
    if (ok && fflush (fp) != 0)
        ok = FALSE;
    if (ferror (fp) && errno) /* the system's reason (disk full, file too large) */
        g_strlcpy (message, g_strerror (errno), size);
    return ok && !ferror (fp);
}

gboolean
image_save (const char *path, ImageType type, const LdmImage *image, const uint16_t *deep,
            GError **error)
{
    char message[256] = "";
    g_autofree char *target = resolve_target (path);
    struct stat st;
    gboolean exists = stat (target, &st) == 0;
    if (exists && !S_ISREG (st.st_mode)) {
        FILE *fp = fopen (target, "wb");
        if (!fp) {
            g_set_error (error, LDM_ERROR, LDM_ERROR_IO, "%s: %s", path, g_strerror (errno));
            return FALSE;
        }
        gboolean ok = write_stream (fp, type, image, deep, message, sizeof message);
        if (fclose (fp) != 0 && ok) {
            g_strlcpy (message, g_strerror (errno), sizeof message);
            ok = FALSE;
        }
        if (!ok)
            g_set_error (error, LDM_ERROR, LDM_ERROR_IO, "%s: %s", path, message);
        return ok;
    }

    /* A new file beside the target, renamed over it once complete. */
    g_autofree char *dir = g_path_get_dirname (target);
    g_autofree char *base = g_path_get_basename (target);
    g_autofree char *tmp = g_strdup_printf ("%s/.%s.XXXXXX", dir, base);
    int fd = g_mkstemp_full (tmp, O_WRONLY, 0600);
    if (fd < 0) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_IO, "%s: cannot create a file in %s: %s",
                     path, dir, g_strerror (errno));
        return FALSE;
    }
    mode_t mask = umask (0);
    umask (mask);
    /* the replaced file's permissions, or a new file's usual ones */
    if (fchmod (fd, exists ? st.st_mode & 07777 : 0666 & ~mask) != 0) {
        /* not fatal: the file stays private to the user */
    }
    FILE *fp = fdopen (fd, "wb");
    gboolean ok = fp != NULL;
    if (!fp) {
        g_strlcpy (message, g_strerror (errno), sizeof message);
        close (fd);
    } else {
        ok = write_stream (fp, type, image, deep, message, sizeof message);
        if (ok && fsync (fileno (fp)) != 0) {
            g_strlcpy (message, g_strerror (errno), sizeof message);
            ok = FALSE;
        }
        if (fclose (fp) != 0 && ok) {
            g_strlcpy (message, g_strerror (errno), sizeof message);
            ok = FALSE;
        }
    }
    if (ok && rename (tmp, target) != 0) {
        g_strlcpy (message, g_strerror (errno), sizeof message);
        ok = FALSE;
    }
    if (!ok) {
        unlink (tmp);
        g_set_error (error, LDM_ERROR, LDM_ERROR_IO, "%s: %s%s", path, message,
                     exists ? " (the existing file is unchanged)" : "");
    }
    return ok;
}
