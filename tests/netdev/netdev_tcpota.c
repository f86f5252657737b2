/*
 * esp_netdev: raw TCP-OTA for NONOS dual images (PROTOCOL-OTA.md §5): OTA, GetNextFlash,
 * FirmwareLength, Ready, the image into the other user slot, the result.
 */
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netdev.h"

void nd_tcpota_session(struct netdev *d, int fd)
{
    char line[32];
    if (nd_recv_line(fd, line, sizeof(line), 5000) < 0)
        return;
    if (strcmp(line, "OTA") != 0) {
        nd_send_str(fd, "ERR: Invalid protocol\r\n");
        return;
    }
    uint64_t len = 0;
    for (;;) {
        if (nd_recv_line(fd, line, sizeof(line), 5000) < 0)
            return;
        if (strcmp(line, "GetNextFlash") == 0) {
            nd_send_str(fd, d->running_slot == 1 ? "user2.bin\r\n" : "user1.bin\r\n");
            continue;
        }
        if (strncmp(line, "FirmwareLength:", 15) == 0) {
            bool digits = false, bad = false;
            for (const char *p = line + 15; *p; p++) {
                if (isdigit((unsigned char)*p)) {
                    len = len * 10 + (uint64_t)(*p - '0');
                    digits = true;
                } else if (*p != ' ' && *p != ',') {
                    bad = true;
                }
            }
            if (!digits || bad || len == 0) {
                nd_send_str(fd, "ERR: Invalid firmware length\r\n");
                return;
            }
            if (len > TCP_OTA_FIRMWARE_SIZE) {
                nd_send_str(fd, "ERR: Firmware length is too big\r\n");
                return;
            }
            nd_send_str(fd, "Ready\r\n");
            break;
        }
        nd_send_str(fd, "ERR: Unexpected header.\r\n");
        return;
    }
    uint8_t *img = malloc(len);
    if (!img || nd_recv_exact(fd, img, len, 5000) < 0) {
        nd_logf(d, "tcpota: image not received");
        free(img);
        return;
    }
    const char *e = NULL;
    if (len < 12 || img[0] != 0xEA || img[1] != 0x04)
        e = "ERR: IROM magic missing.\r\n";
    else if (img[2] > 3 || (img[3] >> 4) > 6)
        e = "ERR: Flash header invalid.\r\n";
    else if ((img[6] | img[7] << 8) != 0x4010)
        e = "ERR: Invalid entry address.\r\n";
    else if (img[8] | img[9] | img[10] | img[11])
        e = "ERR: Invalid start offset.\r\n";
    else if (d->fault == FAULT_ERROR_LINE)
        e = "ERR: Flash failed.\r\n";
    if (e) {
        nd_logf(d, "tcpota: %.*s", (int)strlen(e) - 2, e);
        nd_send_str(fd, e);
    } else {
        int slot = d->running_slot == 1 ? 2 : 1;
        d->running_slot = slot;
        nd_logf(d, "tcpota: wrote user%d.bin (%" PRIu64 " bytes), running user%d", slot, len, slot);
        uint64_t user1_offset = d->flash_offset;
        if (slot == 2 && d->user2_offset)
            d->flash_offset = d->user2_offset;
        nd_apply_image(d, "tcpota", false, img, len);
        d->flash_offset = user1_offset;
        char sp[PATH_MAX + 16];
        snprintf(sp, sizeof(sp), "%s/slot", d->dir);
        nd_write_file(sp, slot == 2 ? "2\n" : "1\n", 2);
        nd_send_str(fd, "Flash upgrade success. Rebooting in 2s.\r\n");
    }
    free(img);
}
