/* ldm-intl.h: gettext for the plug-in's own strings (domain GETTEXT_PACKAGE, "gimp-ldm").
 * libgimp binds the domain to the locale/ folder beside the plug-in before it runs. */
#pragma once

#include <glib/gi18n-lib.h>
