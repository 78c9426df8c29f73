/* clip_clean.c: CLIP's text cleaning and word split (see clip_clean.h), as OpenAI's
 * simple_tokenizer does them with ftfy replaced by NFC: NFC, HTML entities unescaped twice
 * (Python's html.unescape), white space stripped and collapsed, Python's lower case; then
 * the words of CLIP's pattern. */

#include "text/clip_clean.h"

#include <string.h>

#define MAX_TEXT_BYTES ((size_t) 1 << 20)

/* ------------------------------------------------------------ html.unescape */

typedef struct {
    const char *name;
    gunichar    c;
    bool        legacy; /* also recognised without the ';' (HTML5's legacy names) */
} Entity;

/* U+00A0 .. U+00FF in order: all legacy. */
static const char *const latin1_entities[96] = {
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
    "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
    "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
    "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave",
    "Eacute", "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve",
    "Oacute", "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc", "Uuml",
    "Yacute", "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring", "aelig",
    "ccedil", "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc", "iuml", "eth",
    "ntilde", "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash", "ugrave",
    "uacute", "ucirc", "uuml", "yacute", "thorn", "yuml",
};

/* The rest of HTML 4's entities, &apos; and HTML5's upper-case legacy spellings. */
static const Entity other_entities[] = {
    { "quot", 0x22, true }, { "amp", 0x26, true }, { "lt", 0x3c, true }, { "gt", 0x3e, true },
    { "QUOT", 0x22, true }, { "AMP", 0x26, true }, { "LT", 0x3c, true }, { "GT", 0x3e, true },
    { "COPY", 0xa9, true }, { "REG", 0xae, true }, { "apos", 0x27, false },
    { "OElig", 0x152, false }, { "oelig", 0x153, false }, { "Scaron", 0x160, false },
    { "scaron", 0x161, false }, { "Yuml", 0x178, false }, { "fnof", 0x192, false },
    { "circ", 0x2c6, false }, { "tilde", 0x2dc, false },
    { "Alpha", 0x391, false }, { "Beta", 0x392, false }, { "Gamma", 0x393, false },
    { "Delta", 0x394, false }, { "Epsilon", 0x395, false }, { "Zeta", 0x396, false },
    { "Eta", 0x397, false }, { "Theta", 0x398, false }, { "Iota", 0x399, false },
    { "Kappa", 0x39a, false }, { "Lambda", 0x39b, false }, { "Mu", 0x39c, false },
    { "Nu", 0x39d, false }, { "Xi", 0x39e, false }, { "Omicron", 0x39f, false },
    { "Pi", 0x3a0, false }, { "Rho", 0x3a1, false }, { "Sigma", 0x3a3, false },
    { "Tau", 0x3a4, false }, { "Upsilon", 0x3a5, false }, { "Phi", 0x3a6, false },
    { "Chi", 0x3a7, false }, { "Psi", 0x3a8, false }, { "Omega", 0x3a9, false },
    { "alpha", 0x3b1, false }, { "beta", 0x3b2, false }, { "gamma", 0x3b3, false },
    { "delta", 0x3b4, false }, { "epsilon", 0x3b5, false }, { "zeta", 0x3b6, false },
    { "eta", 0x3b7, false }, { "theta", 0x3b8, false }, { "iota", 0x3b9, false },
    { "kappa", 0x3ba, false }, { "lambda", 0x3bb, false }, { "mu", 0x3bc, false },
    { "nu", 0x3bd, false }, { "xi", 0x3be, false }, { "omicron", 0x3bf, false },
    { "pi", 0x3c0, false }, { "rho", 0x3c1, false }, { "sigmaf", 0x3c2, false },
    { "sigma", 0x3c3, false }, { "tau", 0x3c4, false }, { "upsilon", 0x3c5, false },
    { "phi", 0x3c6, false }, { "chi", 0x3c7, false }, { "psi", 0x3c8, false },
    { "omega", 0x3c9, false }, { "thetasym", 0x3d1, false }, { "upsih", 0x3d2, false },
    { "piv", 0x3d6, false },
    { "ensp", 0x2002, false }, { "emsp", 0x2003, false }, { "thinsp", 0x2009, false },
    { "zwnj", 0x200c, false }, { "zwj", 0x200d, false }, { "lrm", 0x200e, false },
    { "rlm", 0x200f, false }, { "ndash", 0x2013, false }, { "mdash", 0x2014, false },
    { "lsquo", 0x2018, false }, { "rsquo", 0x2019, false }, { "sbquo", 0x201a, false },
    { "ldquo", 0x201c, false }, { "rdquo", 0x201d, false }, { "bdquo", 0x201e, false },
    { "dagger", 0x2020, false }, { "Dagger", 0x2021, false }, { "bull", 0x2022, false },
    { "hellip", 0x2026, false }, { "permil", 0x2030, false }, { "prime", 0x2032, false },
    { "Prime", 0x2033, false }, { "lsaquo", 0x2039, false }, { "rsaquo", 0x203a, false },
    { "oline", 0x203e, false }, { "frasl", 0x2044, false }, { "euro", 0x20ac, false },
    { "image", 0x2111, false }, { "weierp", 0x2118, false }, { "real", 0x211c, false },
    { "trade", 0x2122, false }, { "alefsym", 0x2135, false },
    { "larr", 0x2190, false }, { "uarr", 0x2191, false }, { "rarr", 0x2192, false },
    { "darr", 0x2193, false }, { "harr", 0x2194, false }, { "crarr", 0x21b5, false },
    { "lArr", 0x21d0, false }, { "uArr", 0x21d1, false }, { "rArr", 0x21d2, false },
    { "dArr", 0x21d3, false }, { "hArr", 0x21d4, false },
    { "forall", 0x2200, false }, { "part", 0x2202, false }, { "exist", 0x2203, false },
    { "empty", 0x2205, false }, { "nabla", 0x2207, false }, { "isin", 0x2208, false },
    { "notin", 0x2209, false }, { "ni", 0x220b, false }, { "prod", 0x220f, false },
    { "sum", 0x2211, false }, { "minus", 0x2212, false }, { "lowast", 0x2217, false },
    { "radic", 0x221a, false }, { "prop", 0x221d, false }, { "infin", 0x221e, false },
    { "ang", 0x2220, false }, { "and", 0x2227, false }, { "or", 0x2228, false },
    { "cap", 0x2229, false }, { "cup", 0x222a, false }, { "int", 0x222b, false },
    { "there4", 0x2234, false }, { "sim", 0x223c, false }, { "cong", 0x2245, false },
    { "asymp", 0x2248, false }, { "ne", 0x2260, false }, { "equiv", 0x2261, false },
    { "le", 0x2264, false }, { "ge", 0x2265, false }, { "sub", 0x2282, false },
    { "sup", 0x2283, false }, { "nsub", 0x2284, false }, { "sube", 0x2286, false },
    { "supe", 0x2287, false }, { "oplus", 0x2295, false }, { "otimes", 0x2297, false },
    { "perp", 0x22a5, false }, { "sdot", 0x22c5, false }, { "lceil", 0x2308, false },
    { "rceil", 0x2309, false }, { "lfloor", 0x230a, false }, { "rfloor", 0x230b, false },
    { "lang", 0x27e8, false }, { "rang", 0x27e9, false }, /* HTML5's angle brackets */
    { "loz", 0x25ca, false }, { "spades", 0x2660, false }, { "clubs", 0x2663, false },
    { "hearts", 0x2665, false }, { "diams", 0x2666, false },
};

/* NAME (LEN bytes) as an entity; WITH_SEMICOLON: it was followed by ';' (any entity),
 * otherwise only a legacy one. 0 if unknown. */
static gunichar
entity_lookup (const char *name, size_t len, bool with_semicolon)
{
    for (size_t i = 0; i < G_N_ELEMENTS (latin1_entities); i++)
        if (strlen (latin1_entities[i]) == len && memcmp (latin1_entities[i], name, len) == 0)
            return 0xa0 + (gunichar) i;
    for (size_t i = 0; i < G_N_ELEMENTS (other_entities); i++) {
        const Entity *e = &other_entities[i];
        if ((with_semicolon || e->legacy) && strlen (e->name) == len
            && memcmp (e->name, name, len) == 0)
            return e->c;
    }
    return 0;
}

/* HTML5's replacements for numeric references to C1 controls (windows-1252). */
static const uint16_t c1_replacements[32] = {
    0x20ac, 0x81,   0x201a, 0x192,  0x201e, 0x2026, 0x2020, 0x2021, 0x2c6,  0x2030, 0x160,
    0x2039, 0x152,  0x8d,   0x17d,  0x8f,   0x90,   0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x2dc,  0x2122, 0x161,  0x203a, 0x153,  0x9d,   0x17e,  0x178,
};

/* Appends what &#NUM; stands for, as Python's html.unescape does. */
static void
append_char_ref (GString *out, guint64 num)
{
    if (num == 0)
        num = 0xfffd;
    else if (num >= 0x80 && num <= 0x9f)
        num = c1_replacements[num - 0x80];
    else if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff)
        num = 0xfffd;
    else if (num != 0x0d
             && ((num >= 0x01 && num <= 0x08) || num == 0x0b || (num >= 0x0e && num <= 0x1f)
                 || num == 0x7f || (num >= 0xfdd0 && num <= 0xfdef) || (num & 0xfffe) == 0xfffe))
        return; /* noncharacters and controls vanish */
    g_string_append_unichar (out, (gunichar) num);
}

char *
ldm_clip_html_unescape (const char *text)
{
    GString *out = g_string_sized_new (strlen (text));
    const char *p = text;
    while (*p) {
        if (*p != '&') {
            g_string_append_c (out, *p++);
            continue;
        }
        const char *q = p + 1;
        if (*q == '#') {
            bool hex = q[1] == 'x' || q[1] == 'X';
            const char *digits = q + 1 + hex;
            const char *d = digits;
            guint64 num = 0;
            while (hex ? g_ascii_isxdigit (*d) : g_ascii_isdigit (*d)) {
                if (num <= 0x10ffff) /* saturates: anything larger is U+FFFD */
                    num = num * (hex ? 16 : 10)
                          + (guint64) (hex ? g_ascii_xdigit_value (*d) : g_ascii_digit_value (*d));
                d++;
            }
            if (d == digits) { /* "&#" without a number: left as it is */
                g_string_append_c (out, *p++);
                continue;
            }
            append_char_ref (out, num);
            p = *d == ';' ? d + 1 : d;
            continue;
        }
        /* A name: up to 32 characters other than white space, '<', '&', '#', ';'. */
        const char *name_end = q;
        for (int n = 0; n < 32 && *name_end && !strchr ("\t\n\f <&#;", *name_end); n++)
            name_end = g_utf8_next_char (name_end);
        if (name_end == q) {
            g_string_append_c (out, *p++);
            continue;
        }
        bool semicolon = *name_end == ';';
        const char *after = name_end + semicolon;
        gunichar c = entity_lookup (q, (size_t) (name_end - q), semicolon);
        if (c) {
            g_string_append_unichar (out, c);
            p = after;
            continue;
        }
        /* The longest legacy name the text starts with (at least 2 characters), the rest kept
         * (the whole name, without its ';', is one of the candidates). */
        bool found = false;
        long n_name = g_utf8_strlen (q, name_end - q);
        for (long x = semicolon ? n_name : n_name - 1; x >= 2 && !found; x--) {
            const char *prefix_end = g_utf8_offset_to_pointer (q, x);
            if ((c = entity_lookup (q, (size_t) (prefix_end - q), false))) {
                g_string_append_unichar (out, c);
                g_string_append_len (out, prefix_end, after - prefix_end);
                found = true;
            }
        }
        if (!found)
            g_string_append_len (out, p, after - p);
        p = after;
    }
    return g_string_free (out, FALSE);
}

/* ----------------------------------------------------------------- cleaning */

/* Python's str.isspace (what strip() removes). */
static bool
is_python_space (gunichar c)
{
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f) || c == 0x85
           || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028
           || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* \s of CLIP's patterns (the `regex` module: Unicode White_Space). */
bool
clip_is_white_space (gunichar c)
{
    return is_python_space (c) && !(c >= 0x1c && c <= 0x1f);
}

/* Unicode's Cased: the case letters and Other_Lowercase/Other_Uppercase (Roman numerals,
 * circled letters, ordinal and modifier letters). */
static bool
is_cased (gunichar c)
{
    return g_unichar_isupper (c) || g_unichar_islower (c) || g_unichar_istitle (c) || c == 0xaa
           || c == 0xba || (c >= 0x2b0 && c <= 0x2b8) || (c >= 0x2c0 && c <= 0x2c1)
           || (c >= 0x2e0 && c <= 0x2e4) || c == 0x345 || c == 0x37a
           || (c >= 0x1d2c && c <= 0x1d6a) || c == 0x1d78 || (c >= 0x1d9b && c <= 0x1dbf)
           || c == 0x2071 || c == 0x207f || (c >= 0x2090 && c <= 0x209c)
           || (c >= 0x2160 && c <= 0x217f) || (c >= 0x24b6 && c <= 0x24e9)
           || (c >= 0x2c7c && c <= 0x2c7d);
}

static bool
is_case_ignorable (gunichar c)
{
    switch (g_unichar_type (c)) {
    case G_UNICODE_NON_SPACING_MARK:
    case G_UNICODE_ENCLOSING_MARK:
    case G_UNICODE_FORMAT:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_MODIFIER_SYMBOL:
        return true;
    default:
        return c == '\'' || c == '.' || c == ':' || c == 0xb7 || c == 0x387 || c == 0x5f4
               || c == 0x2018 || c == 0x2019 || c == 0x2024 || c == 0x2027 || c == 0xfe13
               || c == 0xfe52 || c == 0xfe55 || c == 0xff07 || c == 0xff0e || c == 0xff1a;
    }
}

/* Python's str.lower() (no locale, unlike g_utf8_strdown): U+0130 -> "i" U+0307, a capital
 * sigma at a word's end -> final sigma, every other character its simple lower case. */
static void
append_lower (GString *out, const gunichar *s, glong n)
{
    for (glong i = 0; i < n; i++) {
        gunichar c = s[i];
        if (c == 0x130) {
            g_string_append (out, "i\xcc\x87");
            continue;
        }
        if (c == 0x3a3) {
            glong j = i - 1;
            while (j >= 0 && is_case_ignorable (s[j]))
                j--;
            bool final = j >= 0 && is_cased (s[j]);
            if (final) {
                j = i + 1;
                while (j < n && is_case_ignorable (s[j]))
                    j++;
                final = j == n || !is_cased (s[j]);
            }
            g_string_append_unichar (out, final ? 0x3c2 : 0x3c3);
            continue;
        }
        /* Roman numerals and circled letters are not "letters" to GLib, but have lower cases */
        if (c >= 0x2160 && c <= 0x216f)
            c += 0x10;
        else if (c >= 0x24b6 && c <= 0x24cf)
            c += 26;
        g_string_append_unichar (out, g_unichar_tolower (c));
    }
}

static gboolean
check_text (const char *text, GError **error)
{
    const char *bad;
    size_t len = strlen (text);
    if (len > MAX_TEXT_BYTES) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the prompt is %zu bytes long: at most %zu", len, MAX_TEXT_BYTES);
        return FALSE;
    }
    if (!g_utf8_validate (text, (gssize) len, &bad)) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT,
                     "the prompt is not valid UTF-8 text (byte %zu is 0x%02x)",
                     (size_t) (bad - text), (unsigned char) *bad);
        return FALSE;
    }
    return TRUE;
}

char *
ldm_tokenizer_clean_text (const char *text, GError **error)
{
    if (!check_text (text, error))
        return NULL;
    g_autofree char *nfc = g_utf8_normalize (text, -1, G_NORMALIZE_NFC);
    if (!nfc) {
        g_set_error (error, LDM_ERROR, LDM_ERROR_ARGUMENT, "the prompt cannot be normalised");
        return NULL;
    }
    g_autofree char *once = ldm_clip_html_unescape (nfc);
    g_autofree char *twice = ldm_clip_html_unescape (once);

    glong n;
    g_autofree gunichar *s = g_utf8_to_ucs4_fast (twice, -1, &n);
    glong first = 0, last = n;
    while (first < last && is_python_space (s[first]))
        first++;
    while (last > first && is_python_space (s[last - 1]))
        last--;
    /* Runs of white space -> one space (the ends are not white space any more). */
    glong m = 0;
    for (glong i = first; i < last; i++) {
        if (clip_is_white_space (s[i])) {
            if (m && s[m - 1] == ' ')
                continue;
            s[m++] = ' ';
        } else {
            s[m++] = s[i];
        }
    }
    GString *out = g_string_sized_new ((gsize) m + 8);
    append_lower (out, s, m);
    return g_string_free (out, FALSE);
}

/* ------------------------------------------------------------------- words */

static bool
is_letter (gunichar c)
{
    switch (g_unichar_type (c)) {
    case G_UNICODE_UPPERCASE_LETTER:
    case G_UNICODE_LOWERCASE_LETTER:
    case G_UNICODE_TITLECASE_LETTER:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_OTHER_LETTER:
        return true;
    default:
        return false;
    }
}

static bool
is_number (gunichar c)
{
    switch (g_unichar_type (c)) {
    case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_OTHER_NUMBER:
        return true;
    default:
        return false;
    }
}

/* The length of LITERAL at P, matched as CLIP's case-insensitive pattern does (ASCII letters
 * in either case, 's' also as U+017F, which case-folds to it), or 0. */
static size_t
match_ignoring_case (const char *p, const char *literal)
{
    const char *start = p;
    for (; *literal; literal++) {
        gunichar c = g_utf8_get_char (p);
        gunichar want = (gunichar) *literal;
        if (!(c == want || c == (gunichar) g_ascii_toupper (*literal)
              || (want == 's' && c == 0x17f)))
            return 0;
        p = g_utf8_next_char (p);
    }
    return (size_t) (p - start);
}

/* "other characters": neither white space, letters nor numbers. */
size_t
clip_word_length (const char *p)
{
    static const char *const specials[] = { CLIP_START_TOKEN, CLIP_END_TOKEN };
    static const char *const contractions[] = { "'s", "'t", "'re", "'ve", "'m", "'ll", "'d" };
    size_t len;
    for (size_t i = 0; i < G_N_ELEMENTS (specials); i++)
        if ((len = match_ignoring_case (p, specials[i])))
            return len;
    if (*p == '\'')
        for (size_t i = 0; i < G_N_ELEMENTS (contractions); i++)
            if ((len = match_ignoring_case (p, contractions[i])))
                return len;
    gunichar c = g_utf8_get_char (p);
    const char *q = g_utf8_next_char (p);
    if (is_letter (c)) {
        while (*q && is_letter (g_utf8_get_char (q)))
            q = g_utf8_next_char (q);
    } else if (!is_number (c)) {
        while (*q) {
            gunichar d = g_utf8_get_char (q);
            if (clip_is_white_space (d) || is_letter (d) || is_number (d))
                break;
            q = g_utf8_next_char (q);
        }
    }
    return (size_t) (q - p);
}
