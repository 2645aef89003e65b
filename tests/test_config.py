"""Tests for L{fireworq.config}: docs/configuration.md and the ``/settings`` object of
docs/api.md."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from io import StringIO

import attrs
from twisted.trial.unittest import SynchronousTestCase

import fireworq
from fireworq.config import (
    KEYS,
    SPECS,
    auto_processes,
    usable_cpus,
    Config,
    Options,
    load_config,
    load_config_or_exit,
    settings,
)
from fireworq.errors import ConfigError

#: The example of docs/api.md, GET /settings (which omits mysql_lock_scope and max_pending_pushes).
SETTINGS_EXAMPLE = json.loads(
    '{"access_log":"","access_log_tag":"fireworq.access","bind":"127.0.0.1:8080",'
    '"config_refresh_interval":"1000","dispatch_idle_conn_timeout":"0",'
    '"dispatch_keep_alive":"false","dispatch_max_conns_per_host":"10",'
    '"dispatch_max_response_body":"1048576","dispatch_user_agent":"Fireworq/0.1.0",'
    '"driver":"mysql","error_log":"","error_log_level":"info","keep_alive":"false",'
    '"max_request_body":"1048576","mysql_dsn":"app:***@tcp(db.internal:3306)/fireworq",'
    '"pid":"","queue_default":"default","queue_default_max_workers":"20",'
    '"queue_default_polling_interval":"200","queue_log":"","queue_log_level":"info",'
    '"queue_log_tag":"fireworq.queue","queue_mysql_dsn":"","repository_mysql_dsn":"",'
    '"shutdown_timeout":"30","sqlite_path":"fireworq.sqlite3"}'
)

#: Keys of fireworq-py beyond Fireworq's (docs/configuration.md, Keys), with their defaults.
OURS = {
    "api_tokens": "0", "api_tokens_file": "", "dispatch_allow": "", "dispatch_deny": "",
    "max_pending_pushes": "10000", "metrics_public": "false", "mysql_lock_scope": "database",
    "processes": "1",
}

INT64_MAX = 2**63 - 1
#: (key, minimum, maximum) of every integer key (docs/configuration.md, Keys).
INTEGER_RANGES = [
    ("config_refresh_interval", 1, 3600000),
    ("dispatch_idle_conn_timeout", 0, INT64_MAX),
    ("dispatch_max_conns_per_host", 0, INT64_MAX),
    ("dispatch_max_response_body", 1, 1073741824),
    ("max_pending_pushes", 1, INT64_MAX),
    ("max_request_body", 1, 16777215),
    ("processes", 1, 64),
    ("queue_default_max_workers", 1, 10000),
    ("queue_default_polling_interval", 1, 3600000),
    ("shutdown_timeout", 0, 86400),
]


def env(key: str) -> str:
    return "FIREWORQ_" + key.upper()


class KeyTests(SynchronousTestCase):
    def test_keys(self) -> None:
        """When the keys are listed, there are Fireworq's 26 and our 8 (docs/configuration.md,
        Keys), in alphabetical order, one Config attribute each."""
        self.assertEqual(len(KEYS), 34)
        self.assertEqual(len(set(KEYS) - set(OURS)), 26)
        self.assertEqual(list(KEYS), sorted(KEYS))
        self.assertEqual(Config.KEYS, KEYS)
        fields = [f.name for f in attrs.fields(Config) if f.name != "given_text"]
        self.assertEqual(fields, list(KEYS))

    def test_integerKeys(self) -> None:
        """When a key is an integer in docs/configuration.md, Keys, it is one in the Config."""
        config = load_config({}, {})
        integers = [k for k in KEYS if type(getattr(config, k)) is int]
        self.assertEqual(integers, [key for key, _, _ in INTEGER_RANGES])


class DefaultTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """When nothing is given, settings() is the example of docs/api.md, GET /settings except
        for the keys the example configured (driver, mysql_dsn, queue_default), plus ours."""
        expected = dict(
            SETTINGS_EXAMPLE,
            driver="sqlite",
            mysql_dsn="tcp(localhost:3306)/fireworq",
            queue_default="",
            **OURS,
        )
        result = settings(load_config({}, {}))
        self.assertEqual(result, expected)
        self.assertEqual(list(result), list(KEYS))

    def test_example(self) -> None:
        """When the example's values are given, settings() is the example of docs/api.md, GET
        /settings exactly, with our keys in their places."""
        config = load_config(
            {
                "driver": "mysql",
                "mysql_dsn": "app:s3cr@t@tcp(db.internal:3306)/fireworq",
                "queue_default": "default",
            },
            {},
        )
        expected = dict(SETTINGS_EXAMPLE, **OURS)
        self.assertEqual(
            json.dumps(settings(config), separators=(",", ":")),
            json.dumps({key: expected[key] for key in KEYS}, separators=(",", ":")),
        )

    def test_typedDefaults(self) -> None:
        """When nothing is given, the Config has typed defaults."""
        config = load_config({}, {})
        self.assertEqual(config.bind, "127.0.0.1:8080")
        self.assertEqual((config.bind_host, config.bind_port), ("127.0.0.1", 8080))
        self.assertIs(config.keep_alive, False)
        self.assertIs(config.dispatch_keep_alive, False)
        self.assertEqual(config.dispatch_user_agent, f"Fireworq/{fireworq.__version__}")
        self.assertEqual((config.error_log_level, config.queue_log_level), ("info", "info"))
        self.assertEqual(config.max_request_body, 1048576)
        self.assertEqual(config.max_pending_pushes, 10000)
        self.assertEqual(config.driver, "sqlite")
        self.assertEqual(config.mysql_lock_scope, "database")
        self.assertEqual(config.queue_default, "")

    def test_unknownKey(self) -> None:
        """When load_config is given a key that does not exist, it refuses it."""
        self.assertRaises(ValueError, load_config, {"bnd": "x"}, {})


class PrecedenceTests(SynchronousTestCase):
    def test_optionBeatsEnvironment(self) -> None:
        """When a key is given as option and environment variable, the option wins."""
        config = load_config({"bind": "0.0.0.0:1"}, {"FIREWORQ_BIND": "0.0.0.0:2"})
        self.assertEqual(config.bind, "0.0.0.0:1")

    def test_environmentBeatsDefault(self) -> None:
        """When a key is given as environment variable only, it beats the default."""
        config = load_config({}, {"FIREWORQ_BIND": "0.0.0.0:2", "FIREWORQ_SHUTDOWN_TIMEOUT": "5"})
        self.assertEqual((config.bind, config.shutdown_timeout), ("0.0.0.0:2", 5))

    def test_everyKeyFromEnvironment(self) -> None:
        """When every key is given by the environment, each is read from its variable."""
        fd, token_file = tempfile.mkstemp(prefix="fireworq-tokens-")
        with os.fdopen(fd, "w") as f:
            f.write("t0 read\n")
        self.addCleanup(os.unlink, token_file)
        values = {
            "access_log": "/var/log/a.log",
            "access_log_tag": "a.tag",
            "api_tokens": "t1:push,t2:admin",
            "api_tokens_file": token_file,
            "bind": "0.0.0.0:9",
            "config_refresh_interval": "2",
            "dispatch_allow": "10.1.0.0/16",
            "dispatch_deny": "10.0.0.0/8,metadata.internal",
            "dispatch_idle_conn_timeout": "3",
            "dispatch_keep_alive": "true",
            "dispatch_max_conns_per_host": "4",
            "dispatch_max_response_body": "5",
            "dispatch_user_agent": "UA/1",
            "driver": "in-memory",
            "error_log": "/var/log/e.log",
            "error_log_level": "warn",
            "keep_alive": "true",
            "max_pending_pushes": "5",
            "max_request_body": "6",
            "metrics_public": "1",
            "mysql_dsn": "u:p@tcp(h:1)/d",
            "mysql_lock_scope": "server",
            "pid": "/run/f.pid",
            "processes": "3",
            "queue_default": "q",
            "queue_default_max_workers": "7",
            "queue_default_polling_interval": "8",
            "queue_log": "/var/log/q.log",
            "queue_log_level": "error",
            "queue_log_tag": "q.tag",
            "queue_mysql_dsn": "u:p@tcp(h:2)/d",
            "repository_mysql_dsn": "u:p@tcp(h:3)/d",
            "shutdown_timeout": "9",
            "sqlite_path": "/data/f.sqlite3",
        }
        self.assertEqual(sorted(values), sorted(KEYS))
        from_env = load_config({}, {env(k): v for k, v in values.items()})
        from_options = load_config(values, {})
        self.assertEqual(from_env, from_options)
        self.assertEqual(from_env.shutdown_timeout, 9)
        self.assertEqual(from_env.queue_log_level, "error")
        masked = dict(values, mysql_dsn="u:***@tcp(h:1)/d")
        masked.update(queue_mysql_dsn="u:***@tcp(h:2)/d", repository_mysql_dsn="u:***@tcp(h:3)/d")
        # How many, never the tokens.
        masked.update(api_tokens="2", api_tokens_file=f"{token_file} (1 token)")
        self.assertEqual(settings(from_env), masked)
        self.assertEqual(len(from_env.all_api_tokens), 3)

    def test_emptyEnvironmentIsUnset(self) -> None:
        """When an environment variable is set but empty, the default is used."""
        config = load_config({}, {env(k): "" for k in KEYS})
        self.assertEqual(config, load_config({}, {}))

    def test_emptyOptionIsEmpty(self) -> None:
        """When an option is given an empty value, the key is the empty string, even over the
        environment."""
        config = load_config(
            {"queue_default": "", "access_log": ""},
            {"FIREWORQ_QUEUE_DEFAULT": "q", "FIREWORQ_ACCESS_LOG": "/tmp/a"},
        )
        self.assertEqual((config.queue_default, config.access_log), ("", ""))
        self.assertEqual(load_config({"queue_mysql_dsn": ""}, {}).queue_mysql_dsn, "")

    def test_emptyOptionIsValidated(self) -> None:
        """When an option is given an empty value that its key does not allow, it is
        refused."""
        for key in (
            "bind",
            "config_refresh_interval",
            "dispatch_keep_alive",
            "dispatch_user_agent",
            "driver",
            "error_log_level",
            "keep_alive",
            "mysql_dsn",
            "mysql_lock_scope",
            "sqlite_path",
        ):
            self.assertRaises(ConfigError, load_config, {key: ""}, {})

    def test_noneOptionIsNotGiven(self) -> None:
        """When an option is None (not given), the environment is used."""
        config = load_config({"bind": None}, {"FIREWORQ_BIND": "0.0.0.0:2"})
        self.assertEqual(config.bind, "0.0.0.0:2")


class BooleanTests(SynchronousTestCase):
    def test_spellings(self) -> None:
        """When a boolean is spelled any of the ways of docs/configuration.md, How values are
        given, it is read."""
        for spelling in ("1", "t", "T", "TRUE", "true", "True"):
            config = load_config({"keep_alive": spelling, "dispatch_keep_alive": spelling}, {})
            self.assertIs(config.keep_alive, True, spelling)
            self.assertIs(config.dispatch_keep_alive, True, spelling)
        for spelling in ("0", "f", "F", "FALSE", "false", "False"):
            config = load_config({}, {"FIREWORQ_KEEP_ALIVE": spelling})
            self.assertIs(config.keep_alive, False, spelling)

    def test_invalid(self) -> None:
        """When a boolean is spelled otherwise, it is refused."""
        for spelling in ("yes", "no", "on", "tRUE", " true", "2", "y"):
            self.assertRaises(ConfigError, load_config, {"keep_alive": spelling}, {})
            self.assertRaises(
                ConfigError, load_config, {}, {"FIREWORQ_DISPATCH_KEEP_ALIVE": spelling}
            )


class DispatchKeepAliveTests(SynchronousTestCase):
    def test_fromDefault(self) -> None:
        """When neither is given, dispatch_keep_alive is false and shown as "false"."""
        config = load_config({}, {})
        self.assertIs(config.dispatch_keep_alive, False)
        self.assertEqual(settings(config)["dispatch_keep_alive"], "false")

    def test_fromOption(self) -> None:
        """When keep_alive is given as option, dispatch_keep_alive follows it, shown resolved."""
        config = load_config({"keep_alive": "1"}, {"FIREWORQ_KEEP_ALIVE": "false"})
        self.assertIs(config.dispatch_keep_alive, True)
        self.assertEqual(settings(config)["keep_alive"], "1")
        self.assertEqual(settings(config)["dispatch_keep_alive"], "true")

    def test_fromEnvironment(self) -> None:
        """When keep_alive is given by the environment, dispatch_keep_alive follows it."""
        config = load_config({}, {"FIREWORQ_KEEP_ALIVE": "T"})
        self.assertIs(config.dispatch_keep_alive, True)

    def test_given(self) -> None:
        """When dispatch_keep_alive is given, it does not follow keep_alive."""
        config = load_config({"keep_alive": "true"}, {"FIREWORQ_DISPATCH_KEEP_ALIVE": "0"})
        self.assertIs(config.dispatch_keep_alive, False)
        self.assertEqual(settings(config)["dispatch_keep_alive"], "0")


class LogLevelTests(SynchronousTestCase):
    def test_names(self) -> None:
        """When a level is a name in any case, it is normalised to lower case."""
        for text, level in (
            ("debug", "debug"),
            ("INFO", "info"),
            ("Warn", "warn"),
            ("eRRoR", "error"),
            ("FATAL", "fatal"),
        ):
            config = load_config({"error_log_level": text}, {"FIREWORQ_QUEUE_LOG_LEVEL": text})
            self.assertEqual((config.error_log_level, config.queue_log_level), (level, level))
            self.assertEqual(settings(config)["error_log_level"], text)

    def test_numbers(self) -> None:
        """When a level is 0 to 4, it is debug to fatal."""
        for number, level in enumerate(("debug", "info", "warn", "error", "fatal")):
            config = load_config({"queue_log_level": str(number)}, {})
            self.assertEqual(config.queue_log_level, level)

    def test_invalid(self) -> None:
        """When a level is anything else, it is refused."""
        for text in ("5", "-1", "00", "warning", "trace", "", " info"):
            self.assertRaises(ConfigError, load_config, {"error_log_level": text}, {})
            self.assertRaises(ConfigError, load_config, {"queue_log_level": text}, {})

    def test_debug(self) -> None:
        """When DEBUG is non-empty, both levels default to debug, shown resolved."""
        config = load_config({}, {"DEBUG": "1"})
        self.assertEqual((config.error_log_level, config.queue_log_level), ("debug", "debug"))
        shown = settings(config)
        self.assertEqual((shown["error_log_level"], shown["queue_log_level"]), ("debug", "debug"))

    def test_debugEmpty(self) -> None:
        """When DEBUG is empty, both levels default to info."""
        config = load_config({}, {"DEBUG": ""})
        self.assertEqual((config.error_log_level, config.queue_log_level), ("info", "info"))

    def test_debugOverridden(self) -> None:
        """When DEBUG is set and a level is given, the given level wins."""
        config = load_config({"error_log_level": "error"}, {"DEBUG": "1"})
        self.assertEqual((config.error_log_level, config.queue_log_level), ("error", "debug"))


class IntegerTests(SynchronousTestCase):
    def test_boundaries(self) -> None:
        """When an integer is at either end of its range it is accepted; one beyond, refused
        with a message naming the key, the option and the range."""
        for key, low, high in INTEGER_RANGES:
            option = "--" + key.replace("_", "-")
            for value in (low, high):
                self.assertEqual(getattr(load_config({key: str(value)}, {}), key), value, key)
                self.assertEqual(getattr(load_config({}, {env(key): str(value)}), key), value)
            for value in (low - 1, high + 1):
                with self.assertRaises(ConfigError, msg=f"{key}={value}") as caught:
                    load_config({key: str(value)}, {})
                what = "auto or an integer" if key == "processes" else "an integer"
                self.assertEqual(
                    str(caught.exception),
                    f'invalid {key} ({option}): "{value}" is not {what} from {low} to {high}',
                )

    def test_autoProcesses(self) -> None:
        """When processes is auto (the default), the node runs one process except with the
        mysql driver on 4 CPUs or more: half of them, at most 4; /settings shows the
        number."""
        self.assertEqual([auto_processes("mysql", cpus) for cpus in (1, 2, 3, 4, 6, 8, 64)],
                         [1, 1, 1, 2, 3, 4, 4])
        self.assertEqual(auto_processes("sqlite", 64), 1)
        self.assertEqual(auto_processes("in-memory", 64), 1)
        config = load_config({"processes": "auto", "driver": "mysql"}, {})
        self.assertEqual(config.processes, auto_processes("mysql", usable_cpus()))
        self.assertEqual(settings(config)["processes"], str(config.processes))
        self.assertEqual(load_config({}, {}).processes, 1)

    def test_notIntegers(self) -> None:
        """When an integer key is given something other than decimal digits, it is
        refused."""
        for text in (
            "abc",
            "",
            " 5",
            "5 ",
            "1_000",
            "1.0",
            "0x10",
            "\u0665",
            "1e3",
            "+",
            "9" * 5000,
        ):
            self.assertRaises(ConfigError, load_config, {"max_request_body": text}, {})

    def test_signs(self) -> None:
        """When an integer has a sign, it is read (as Go does) and then range-checked."""
        self.assertEqual(load_config({"shutdown_timeout": "+5"}, {}).shutdown_timeout, 5)
        self.assertEqual(load_config({"shutdown_timeout": "-0"}, {}).shutdown_timeout, 0)
        self.assertRaises(ConfigError, load_config, {"shutdown_timeout": "-1"}, {})

    def test_shownAsGiven(self) -> None:
        """When an integer is given with a sign or leading zeros, /settings shows it so."""
        config = load_config({"shutdown_timeout": "+5"}, {"FIREWORQ_MAX_REQUEST_BODY": "007"})
        self.assertEqual(settings(config)["shutdown_timeout"], "+5")
        self.assertEqual(settings(config)["max_request_body"], "007")

    def test_environmentMessage(self) -> None:
        """When an invalid value comes from the environment, the message names the
        variable."""
        with self.assertRaises(ConfigError) as caught:
            load_config({}, {"FIREWORQ_MAX_REQUEST_BODY": "abc"})
        self.assertEqual(
            str(caught.exception),
            'invalid max_request_body (FIREWORQ_MAX_REQUEST_BODY): "abc" is not an integer'
            " from 1 to 16777215",
        )


class ChoiceTests(SynchronousTestCase):
    def test_drivers(self) -> None:
        """When the driver is sqlite, mysql or in-memory, it is accepted."""
        for driver in ("sqlite", "mysql", "in-memory"):
            self.assertEqual(load_config({"driver": driver}, {}).driver, driver)

    def test_badDriver(self) -> None:
        """When the driver is anything else, it is refused."""
        for driver in ("MySQL", "sqlite3", "memory", "in_memory", ""):
            with self.assertRaises(ConfigError) as caught:
                load_config({"driver": driver}, {})
            self.assertIn("driver (--driver)", str(caught.exception))

    def test_lockScopes(self) -> None:
        """When the lock scope is database or server it is accepted, otherwise refused."""
        for scope in ("database", "server"):
            self.assertEqual(load_config({"mysql_lock_scope": scope}, {}).mysql_lock_scope, scope)
        for scope in ("Database", "global", "db", ""):
            self.assertRaises(ConfigError, load_config, {"mysql_lock_scope": scope}, {})


class DSNTests(SynchronousTestCase):
    def test_parsed(self) -> None:
        """When only mysql_dsn is given, it is the DSN in effect for the queue and the
        repository; each of them can be given its own."""
        config = load_config({"mysql_dsn": "u:p@tcp(main:1)/d"}, {})
        self.assertEqual(config.mysql_dsn_parsed.host, "main")
        self.assertEqual(config.queue_mysql_dsn_parsed.host, "main")
        self.assertEqual(config.repository_mysql_dsn_parsed.host, "main")
        config = load_config(
            {"queue_mysql_dsn": "tcp(q)/d"}, {"FIREWORQ_REPOSITORY_MYSQL_DSN": "tcp(r)/d"}
        )
        self.assertEqual(config.mysql_dsn_parsed.host, "localhost")
        self.assertEqual(config.queue_mysql_dsn_parsed.host, "q")
        self.assertEqual(config.repository_mysql_dsn_parsed.host, "r")

    def test_invalidWhateverTheDriver(self) -> None:
        """When any DSN is invalid, the configuration is refused, even with another driver."""
        for key in ("mysql_dsn", "queue_mysql_dsn", "repository_mysql_dsn"):
            for driver in ("sqlite", "in-memory", "mysql"):
                self.assertRaises(ConfigError, load_config, {key: "tcp(h/db", "driver": driver}, {})

    def test_messageMasksPassword(self) -> None:
        """When an invalid DSN has a password, the message shows it masked."""
        for key in ("mysql_dsn", "queue_mysql_dsn", "repository_mysql_dsn"):
            for text in (
                "app:hunter2@tcp(db",
                "app:hun/ter2@tcp(db)",
                "app:hunter2@tcp(db)/x?strict=1",
            ):
                with self.assertRaises(ConfigError) as caught:
                    load_config({}, {env(key): text})
                message = str(caught.exception)
                self.assertNotIn("hunter2", message)
                self.assertNotIn("ter2", message)
                self.assertIn(key, message)
                self.assertIn("app:***@tcp(db", message)

    def test_settingsMasksPasswords(self) -> None:
        """When the DSNs have passwords, /settings shows them masked, empty ones as given."""
        config = load_config(
            {"mysql_dsn": "root:@tcp(127.0.0.1:3306)/fireworq"},
            {"FIREWORQ_QUEUE_MYSQL_DSN": "q:a:b@c/d@tcp(h)/x"},
        )
        shown = settings(config)
        self.assertEqual(shown["mysql_dsn"], "root:***@tcp(127.0.0.1:3306)/fireworq")
        self.assertEqual(shown["queue_mysql_dsn"], "q:***@tcp(h)/x")
        self.assertEqual(shown["repository_mysql_dsn"], "")

    def test_reprMasksPasswords(self) -> None:
        """When a Config is shown with repr (as in a log), no DSN password appears."""
        config = load_config(
            {"mysql_dsn": "a:hunter2@tcp(h)/d", "queue_mysql_dsn": "b:hunter2@tcp(h)/d"},
            {"FIREWORQ_REPOSITORY_MYSQL_DSN": "c:hunter2@tcp(h)/d"},
        )
        self.assertNotIn("hunter2", repr(config))
        self.assertIn("mysql_dsn='a:***@tcp(h)/d'", repr(config))


class QueueDefaultTests(SynchronousTestCase):
    def test_lengths(self) -> None:
        """When the default queue name has 46 characters it is accepted, 47 refused."""
        self.assertEqual(load_config({"queue_default": "q" * 46}, {}).queue_default, "q" * 46)
        with self.assertRaises(ConfigError) as caught:
            load_config({}, {"FIREWORQ_QUEUE_DEFAULT": "q" * 47})
        self.assertIn("queue_default (FIREWORQ_QUEUE_DEFAULT)", str(caught.exception))

    def test_codePoints(self) -> None:
        """When the default queue name is not ASCII, its length counts code points."""
        name = "\u30ad\u30e5\u30fc" * 15 + "\U0001f600"  # 46 code points, far more bytes
        self.assertEqual(load_config({"queue_default": name}, {}).queue_default, name)
        self.assertRaises(ConfigError, load_config, {"queue_default": name + "x"}, {})


class BindTests(SynchronousTestCase):
    def test_valid(self) -> None:
        """When bind is host:port, [ipv6]:port or :port with a port from 0 to 65535, it is
        accepted and split."""
        cases = {
            "127.0.0.1:8080": ("127.0.0.1", 8080),
            "0.0.0.0:0": ("0.0.0.0", 0),
            "localhost:65535": ("localhost", 65535),
            "my-host.example.com:80": ("my-host.example.com", 80),
            ":8080": ("", 8080),
            "[::1]:8080": ("::1", 8080),
            "[::]:1": ("::", 1),
        }
        for text, (host, port) in cases.items():
            config = load_config({"bind": text}, {})
            self.assertEqual((config.bind, config.bind_host, config.bind_port), (text, host, port))

    def test_invalid(self) -> None:
        """When bind is anything else, it is refused."""
        for text in (
            "",
            "8080",
            "127.0.0.1",
            "127.0.0.1:",
            "127.0.0.1:65536",
            "127.0.0.1:-1",
            "127.0.0.1:+80",
            "localhost:http",
            "::1:8080",
            "[::1]",
            "[not-ipv6]:80",
            "a b:80",
            "-host:80",
        ):
            with self.assertRaises(ConfigError, msg=text) as caught:
                load_config({"bind": text}, {})
            self.assertIn("bind (--bind)", str(caught.exception))


class OtherValueTests(SynchronousTestCase):
    def test_userAgent(self) -> None:
        """When the worker User-Agent is given, it must be a header value."""
        self.assertEqual(
            load_config({"dispatch_user_agent": "My Agent/1.0 (x)"}, {}).dispatch_user_agent,
            "My Agent/1.0 (x)",
        )
        for text in ("", " ", "a\r\nX-Evil: 1", "caf\u00e9", " a", "a "):
            self.assertRaises(ConfigError, load_config, {"dispatch_user_agent": text}, {})

    def test_freeText(self) -> None:
        """When paths and tags are given, any text is kept as is."""
        config = load_config({"access_log_tag": "", "pid": "/run/x y.pid"}, {})
        self.assertEqual((config.access_log_tag, config.pid), ("", "/run/x y.pid"))

    def test_evolvedSettings(self) -> None:
        """When a Config is changed with attrs.evolve, /settings shows the new value."""
        config = attrs.evolve(load_config({"bind": "0.0.0.0:1"}, {}), bind="0.0.0.0:2")
        self.assertEqual(settings(config)["bind"], "0.0.0.0:2")


class ReportTests(SynchronousTestCase):
    def test_oneLine(self) -> None:
        """When a value is invalid, load_config_or_exit writes exactly one line and exits
        with status 1."""
        stderr = StringIO()
        with self.assertRaises(SystemExit) as caught:
            load_config_or_exit({"max_request_body": "abc"}, {}, stderr)
        self.assertEqual(caught.exception.code, 1)
        self.assertEqual(
            stderr.getvalue(),
            'fireworq: invalid max_request_body (--max-request-body): "abc" is not an integer'
            " from 1 to 16777215\n",
        )

    def test_oneLineWhateverTheValue(self) -> None:
        """When the invalid value contains line breaks or quotes, the message is still one
        line."""
        stderr = StringIO()
        with self.assertRaises(SystemExit):
            load_config_or_exit({}, {"FIREWORQ_DRIVER": 'my"sql\n\u2028x\\'}, stderr)
        self.assertEqual(len(stderr.getvalue().splitlines()), 1)
        self.assertIn('"my\\"sql\\u000a\\u2028x\\\\"', stderr.getvalue())

    def test_valid(self) -> None:
        """When every value is valid, load_config_or_exit returns the Config."""
        stderr = StringIO()
        config = load_config_or_exit({"bind": ":1"}, {}, stderr)
        self.assertEqual(config.bind_port, 1)
        self.assertEqual(stderr.getvalue(), "")


class OptionsTests(SynchronousTestCase):
    def parse(self, argv: list[str], environ: dict[str, str] | None = None) -> Config:
        options = Options()
        options.environ = environ or {}
        options.parseOptions(argv)
        return options.config

    def test_forms(self) -> None:
        """When an option is given as --name value or --name=value, it is read."""
        self.assertEqual(self.parse(["--bind", "0.0.0.0:9"]).bind, "0.0.0.0:9")
        self.assertEqual(self.parse(["--bind=0.0.0.0:9"]).bind, "0.0.0.0:9")

    def test_valueStartingWithDash(self) -> None:
        """When a separate value starts with -, it is still the value (and range-checked)."""
        options = Options()
        options.environ = {}
        options.stderr = StringIO()
        self.assertRaises(SystemExit, options.parseOptions, ["--shutdown-timeout", "-1"])
        self.assertIn("shutdown_timeout", options.stderr.getvalue())

    def test_everyOption(self) -> None:
        """When every option is given, each sets its key."""
        argv = [f"--{spec.option}={spec.default}" for spec in SPECS if spec.default is not None]
        argv += ["--dispatch-keep-alive=1", "--error-log-level=3", "--queue-log-level=4"]
        argv += ["--dispatch-user-agent=UA"]
        config = self.parse(argv)
        self.assertEqual(dict(config.given_text).keys(), set(KEYS))
        self.assertEqual((config.error_log_level, config.queue_log_level), ("error", "fatal"))

    def test_emptyValue(self) -> None:
        """When an option is given empty, it beats the environment."""
        config = self.parse(["--queue-default="], {"FIREWORQ_QUEUE_DEFAULT": "q"})
        self.assertEqual(config.queue_default, "")

    def test_environment(self) -> None:
        """When no option is given, the environment is used."""
        config = self.parse([], {"FIREWORQ_BIND": ":7", "DEBUG": "y"})
        self.assertEqual((config.bind, config.queue_log_level), (":7", "debug"))

    def test_invalidValue(self) -> None:
        """When an option's value is invalid, the process exits with one line on stderr."""
        options = Options()
        options.environ = {}
        options.stderr = StringIO()
        with self.assertRaises(SystemExit) as caught:
            options.parseOptions(["--driver", "postgres"])
        self.assertEqual(caught.exception.code, 1)
        self.assertEqual(
            options.stderr.getvalue(),
            'fireworq: invalid driver (--driver): "postgres" is not one of sqlite, mysql,'
            " in-memory\n",
        )

    def test_usageErrors(self) -> None:
        """When an option is unknown, has no value, or is given with one dash, or an argument
        is given, it is a usage error: status 2 and one line naming it, with a hint."""
        for argv, problem in (
            (["--bnd=x"], "unknown option --bnd"),
            (["--bogus"], "unknown option --bogus"),
            (["--bind"], "option --bind needs a value"),
            (["-bind", "x"], "unknown option -b"),
            (["-b", "x"], "unknown option -b"),
            (["extra"], "unexpected argument 'extra'"),
        ):
            options = Options()
            options.environ = {}
            options.stderr = StringIO()
            exit = self.assertRaises(SystemExit, options.parseOptions, argv)
            self.assertEqual(exit.code, 2)
            self.assertEqual(options.stderr.getvalue(),
                             f"fireworq: {problem}; see fireworq --help\n")

    def test_version(self) -> None:
        """When --version is given, the package version is printed and nothing runs."""
        options = Options()
        out = StringIO()
        self.patch(sys, "stdout", out)
        exit = self.assertRaises(SystemExit, options.parseOptions, ["--version"])
        self.assertEqual(exit.code, 0)
        self.assertEqual(out.getvalue(), f"fireworq-py {fireworq.__version__}\n")

    def test_help(self) -> None:
        """When the options are listed, each has its environment variable and its default in
        its help, and the usage text shows every variable unbroken."""
        docs = {row[0]: row[3] for row in Options.optParameters}
        self.assertEqual(list(docs), [spec.option for spec in SPECS])
        for spec in SPECS:
            doc = docs[spec.option]
            self.assertIn(f"[env {spec.env}]", doc)
            self.assertIn("(default: ", doc)
            if spec.default:
                self.assertIn(f"(default: {spec.default})", doc)
        self.assertIn("(default: Fireworq/0.1.0)", docs["dispatch-user-agent"])
        self.assertIn("(default: the value of keep_alive)", docs["dispatch-keep-alive"])
        self.assertIn("(default: info; debug when DEBUG is set)", docs["error-log-level"])
        self.assertIn("(default: info; debug when DEBUG is set)", docs["queue-log-level"])
        for width in (None, 40, 80):
            text = Options().getUsage(width=width)
            for spec in SPECS:
                self.assertIn(f"--{spec.option}=", text)
                self.assertIn(spec.env, text)

    def test_noDefaults(self) -> None:
        """When no option is given, every option is None, so that given-empty differs."""
        options = Options()
        for spec in SPECS:
            self.assertIsNone(options[spec.option])
