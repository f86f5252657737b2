/*
 * json_msg: small helpers shared by the parsers of JSON input (config,
 * firmware manifests) for writing error messages a technician can read.
 */
#ifndef ESPSTATION_JSON_MSG_H
#define ESPSTATION_JSON_MSG_H

#include <stddef.h>

#include <json-c/json.h>

/* "got \"fast\"", "got 3.5", "got a list": what a wrong value was, for messages. */
void json_msg_describe(json_object *v, char *buf, size_t n);

#endif
