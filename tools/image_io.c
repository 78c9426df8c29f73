/* image_io.c: PNG (libpng) and JPEG (libjpeg) for the `ldm` program. See image_io.h. */
#include "image_io.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h> /* needs stdio.h first */
#include <png.h>
#include <string.h>

static void
set_io_error (GError **error, const char *path, const char *what)
{
    g_set_error (error, LDM_ERROR, LDM_ERROR_FORMAT, "%s: %s", path, what);
}

static gboolean
load_png (const char *path, FILE *fp, LdmImage *image, GError **error)
{
    png_image png;
    memset (&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_stdio (&png, fp)) {
        set_io_error (error, path, png.message[0] ? png.message : "not a readable PNG");
        return FALSE;
    }
    bool alpha = png.format & PNG_FORMAT_FLAG_ALPHA, colour = png.format & PNG_FORMAT_FLAG_COLOR;
    png.format = alpha ? PNG_FORMAT_RGBA : (colour ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY);
    if (png.width == 0 || png.height == 0 || png.width > 65536 || png.height > 65536) {
        png_image_free (&png);
        set_io_error (error, path, "image size out of range");
        return FALSE;
    }
    size_t size = PNG_IMAGE_SIZE (png);
    uint8_t *pixels = g_try_malloc (size);
    if (!pixels) {
        png_image_free (&png);
        set_io_error (error, path, "not enough memory for the image");
        return FALSE;
    }
    if (!png_image_finish_read (&png, NULL, pixels, 0, NULL)) {
        g_free (pixels);
        set_io_error (error, path, png.message[0] ? png.message : "damaged PNG");
        png_image_free (&png);
        return FALSE;
    }
    *image = (LdmImage) { (int) png.width, (int) png.height, (int) PNG_IMAGE_PIXEL_CHANNELS (png.format),
                          pixels };
    png_image_free (&png);
    return TRUE;
}

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

static gboolean
load_jpeg (const char *path, FILE *fp, LdmImage *image, GError **error)
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
    jpeg_read_header (&cinfo, TRUE);
    cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress (&cinfo);
    int w = (int) cinfo.output_width, h = (int) cinfo.output_height, c = cinfo.output_components;
    pixels = g_try_malloc_n ((size_t) w * h, c);
    if (!pixels) {
        jpeg_destroy_decompress (&cinfo);
        set_io_error (error, path, "not enough memory for the image");
        return FALSE;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t) cinfo.output_scanline * w * c;
        jpeg_read_scanlines (&cinfo, &row, 1);
    }
    jpeg_finish_decompress (&cinfo);
    jpeg_destroy_decompress (&cinfo);
    *image = (LdmImage) { w, h, c, pixels };
    return TRUE;
}

gboolean
image_load (const char *path, LdmImage *image, GError **error)
{
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
        ok = load_png (path, fp, image, error);
    } else if (got >= 3 && magic[0] == 0xff && magic[1] == 0xd8 && magic[2] == 0xff) {
        ok = load_jpeg (path, fp, image, error);
    } else {
        set_io_error (error, path, "not a PNG or JPEG image");
        ok = FALSE;
    }
    fclose (fp);
    return ok;
}

gboolean
image_load_mask (const char *path, LdmImage *mask, GError **error)
{
    LdmImage img = { 0 };
    if (!image_load (path, &img, error))
        return FALSE;
    if (img.channels == 1) {
        *mask = img;
        return TRUE;
    }
    size_t n = (size_t) img.width * img.height;
    uint8_t *grey = g_malloc (n);
    for (size_t i = 0; i < n; i++)
        grey[i] = img.pixels[i * img.channels];
    *mask = (LdmImage) { img.width, img.height, 1, grey };
    ldm_image_clear (&img);
    return TRUE;
}

gboolean
image_save_png (const char *path, const LdmImage *image, GError **error)
{
    png_image png;
    memset (&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    png.width = (png_uint_32) image->width;
    png.height = (png_uint_32) image->height;
    png.format = image->channels == 4 ? PNG_FORMAT_RGBA
                 : image->channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    if (!png_image_write_to_file (&png, path, 0, image->pixels, 0, NULL)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_IO, "%s: %s", path,
                     png.message[0] ? png.message : "cannot write the PNG");
        png_image_free (&png);
        return FALSE;
    }
    return TRUE;
}
