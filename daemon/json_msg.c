/* json_msg: see json_msg.h. */
#include "json_msg.h"

#include <stdio.h>
#include <string.h>

void json_msg_describe(json_object *v, char *buf, size_t n)
{
    switch (json_object_get_type(v)) {
    case json_type_null:
        snprintf(buf, n, "got null");
        return;
    case json_type_object:
        snprintf(buf, n, "got an object");
        return;
    case json_type_array:
        snprintf(buf, n, "got a list");
        return;
    default:
        break;
    }
    const char *s =
        json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!s)
        s = "?";
    if (strlen(s) > 60)
        snprintf(buf, n, "got %.57s...", s);
    else
        snprintf(buf, n, "got %s", s);
}
