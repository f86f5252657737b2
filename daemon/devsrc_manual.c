/*
 * devsrc_manual: port events for manually attached URIs (config "ports", and
 * later the REST API's attach). The slot key of such a port is "uri:<uri>":
 * the URI is its identity, since there is no physical port path to go by.
 * Presence polling of pty paths is the station's job (station.c).
 */
#include <stddef.h>

#include "devsrc.h"

#include <stdio.h>
#include <string.h>

const char *port_event_kind_to_string(enum port_event_kind kind)
{
    switch (kind) {
    case PORT_ADDED:
        return "added";
    case PORT_REMOVED:
        return "removed";
    }
    return "unknown";
}

void devsrc_manual_event(enum port_event_kind kind, const char *uri, const char *label,
                         struct port_event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->kind = kind;
    snprintf(ev->slot_key, sizeof(ev->slot_key), "uri:%s", uri ? uri : "");
    snprintf(ev->uri, sizeof(ev->uri), "%s", uri ? uri : "");
    snprintf(ev->label, sizeof(ev->label), "%s", label ? label : "");
}
