/*
 * test_daemon_bridges: the USB-serial bridge table (daemon/bridges.c): VID:PID and
 * product string -> highest reliable baud and reset style, and the config's
 * "bridges" overrides (max_baud, reset) merged over it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridges.h"
#include "config.h"

static void test_lookup(void **state)
{
    (void)state;
    const struct bridge_info *b;
    /* one id, three chips: the product string decides, the plain CP2102 is the default */
    b = bridges_lookup(0x10c4, 0xea60, "CP2102N USB to UART Bridge Controller");
    assert_non_null(b);
    assert_int_equal(b->max_baud, 3000000);
    assert_string_equal(b->name, "CP2102N");
    b = bridges_lookup(0x10c4, 0xea60, "CP2104 USB to UART Bridge Controller");
    assert_int_equal(b->max_baud, 2000000);
    b = bridges_lookup(0x10c4, 0xea60, "CP2102 USB to UART Bridge Controller");
    assert_int_equal(b->max_baud, 921600);
    b = bridges_lookup(0x10c4, 0xea60, NULL);
    assert_int_equal(b->max_baud, 921600);
    assert_int_equal(bridges_lookup(0x0403, 0x6001, "FT232R USB UART")->max_baud, 3000000);
    assert_int_equal(bridges_lookup(0x1a86, 0x7523, "USB Serial")->max_baud, 2000000);
    assert_true(bridges_lookup(0x1a86, 0x55d4, NULL)->max_baud > 3000000);
    assert_true(bridges_lookup(0x1a86, 0x55d3, NULL)->max_baud > 3000000);
    /* the chip's own USB: no UART, its reset style */
    b = bridges_lookup(0x303a, 0x1001, "USB JTAG/serial debug unit");
    assert_int_equal(b->max_baud, 0);
    assert_int_equal(b->reset, BRIDGE_RESET_USB_JTAG);
    assert_int_equal(bridges_lookup(0x0403, 0x6001, NULL)->reset, BRIDGE_RESET_CLASSIC);
    assert_null(bridges_lookup(0x1234, 0x5678, NULL));

    /* every row is sane: a name, a rate above 115200 or none */
    size_t n;
    const struct bridge_info *t = bridges_builtin(&n);
    assert_true(n >= 10);
    for (size_t i = 0; i < n; i++) {
        assert_non_null(t[i].name);
        assert_true(t[i].max_baud == 0 || t[i].max_baud > 115200);
    }
    assert_int_equal(bridge_reset_from_string("usb-jtag"), BRIDGE_RESET_USB_JTAG);
    assert_int_equal(bridge_reset_from_string("classic"), BRIDGE_RESET_CLASSIC);
    assert_int_equal(bridge_reset_from_string("jtag"), -EINVAL);
    assert_string_equal(bridge_reset_to_string(BRIDGE_RESET_USB_JTAG), "usb-jtag");
}

static struct config *load(const char *json)
{
    struct config *cfg = NULL;
    char err[512];
    if (config_load_string(json, strlen(json), "test", &cfg, err, sizeof(err)) < 0)
        fail_msg("config: %s", err);
    return cfg;
}

static void test_config_override(void **state)
{
    (void)state;
    struct config *cfg = load("{\"bridges\": [\"10c4:ea60\",\n"
                              "  {\"id\": \"0403:6001\", \"max_baud\": 1500000},\n"
                              "  {\"id\": \"1209:abcd\", \"name\": \"our jig\", \"max_baud\": "
                              "2000000, \"reset\": \"usb-jtag\"}]}");
    struct bridge_port bp;
    /* not overridden: the table */
    bridges_for_port(cfg, 0x10c4, 0xea60, "CP2102N USB to UART Bridge Controller", &bp);
    assert_int_equal(bp.max_baud, 3000000);
    assert_string_equal(bp.name, "CP2102N");
    /* a slower cable on every FT232R of this station */
    bridges_for_port(cfg, 0x0403, 0x6001, NULL, &bp);
    assert_int_equal(bp.max_baud, 1500000);
    assert_int_equal(bp.reset, BRIDGE_RESET_CLASSIC);
    /* an id the table does not know, described by the config */
    bridges_for_port(cfg, 0x1209, 0xabcd, NULL, &bp);
    assert_string_equal(bp.name, "our jig");
    assert_int_equal(bp.max_baud, 2000000);
    assert_int_equal(bp.reset, BRIDGE_RESET_USB_JTAG);
    /* unknown everywhere */
    bridges_for_port(cfg, 0x1234, 0x5678, NULL, &bp);
    assert_null(bp.name);
    assert_int_equal(bp.max_baud, 0);
    /* the defaults, with no config */
    bridges_for_port(NULL, 0x1a86, 0x7523, NULL, &bp);
    assert_int_equal(bp.max_baud, 2000000);
    config_free(cfg);
}

/* Every adapter the table knows is tagged by the shipped udev rules and is a default bridge
 * of the config (a CH343 was in the table, not in the rules: its board was never seen). */
static void test_table_in_udev_rules_and_defaults(void **state)
{
    (void)state;
    char path[4096], rules[16384];
    snprintf(path, sizeof(path), "%s/../udev/60-espstation.rules", TEST_SRC_DIR);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t len = fread(rules, 1, sizeof(rules) - 1, f);
    fclose(f);
    rules[len] = '\0';
    struct config *cfg = load("{}");
    size_t n;
    const struct bridge_info *t = bridges_builtin(&n);
    for (size_t i = 0; i < n; i++) {
        char want[96];
        snprintf(want, sizeof(want), "ATTRS{idVendor}==\"%04x\", ATTRS{idProduct}==\"%04x\"",
                 t[i].vid, t[i].pid);
        if (!strstr(rules, want))
            print_error("%s (%s) is not in %s\n", want, t[i].name, path);
        assert_non_null(strstr(rules, want));
        assert_true(config_is_known_bridge(cfg, t[i].vid, t[i].pid));
    }
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_table_in_udev_rules_and_defaults),
        cmocka_unit_test(test_config_override),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
