"""Settings: flags over environment over defaults, and a ConfigError naming the bad setting."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.config import (
    FROM_DEFAULT,
    FROM_ENVIRONMENT,
    FROM_FLAG,
    MAX_VISIBILITY_TIMEOUT_S,
    MAX_WAIT_TIME_S,
    SETTINGS,
    SETTINGS_BY_FIELD,
    Setting,
    Settings,
    add_arguments,
    load_settings,
    resolve,
)
from worker.effective import HIDDEN_RANDOM, HIDDEN_SET, check_variable_names, effective_settings
from worker.errors import ConfigError

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/verdicts"
DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/verdicts-dlq"
FIFO_QUEUE = QUEUE + ".fifo"
FIFO_DLQ = DLQ + ".fifo"
REQUIRED_ENV = {"FEEDBACK_QUEUE_URL": QUEUE, "FEEDBACK_DLQ_URL": DLQ}
HASH_KEY = "correct-horse-battery-staple"

# Values each setting must refuse (whatever the other settings say).
BAD_VALUES: dict[str, list[str]] = {
    "queue_url": ["verdicts", "ftp://sqs.example.com/1/q", "https://sqs.example.com", "https://"],
    "dlq_url": ["verdicts-dlq", "file:///tmp/q"],
    "concurrency": ["0", "-3", "1.5", "many", "1e3"],
    "rate_limit": ["0", "-1", "nan", "inf", "fast"],
    "user_rate_limit": ["0", "-0.5", "nan", "ten"],
    "visibility_timeout_s": ["0", str(MAX_VISIBILITY_TIMEOUT_S + 1), "nan", "1m"],
    "shutdown_timeout_s": ["-1", "nan", "20s"],
    "max_attempts": ["0", "-1", "three"],
    "wait_time_s": ["-1", str(MAX_WAIT_TIME_S + 1), "nan"],
    "metrics_port": ["-1", "65536", "http", "80.5"],
    "log_format": ["xml", "JSONL"],
    "log_level": ["trace", "critical"],
    "username_hash_key": ["short", "fifteen-chars!!"],
    "cognito_endpoints": [
        "https://cognito-idp.eu-west-1.amazonaws.com",
        "eu-west-1=",
        "xx-fake-1=https://example.com",
        "eu-west-1=ftp://example.com",
        ",",
    ],
    "metrics_bind": ["0.0.0.0:9464", "http://localhost", "300.1.2.3", "two words", "::1::2"],
}
NUMERIC_FIELDS = [
    "concurrency",
    "rate_limit",
    "user_rate_limit",
    "visibility_timeout_s",
    "shutdown_timeout_s",
    "max_attempts",
    "wait_time_s",
    "metrics_port",
]


def config_error(
    args: argparse.Namespace | Mapping[str, str], environ: Mapping[str, str]
) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(args, environ)
    return caught.value


def parsed_flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_required_urls_from_the_environment_are_enough() -> None:
    settings = load_settings({}, REQUIRED_ENV)
    assert settings.queue_url == QUEUE
    assert settings.dlq_url == DLQ
    assert not settings.is_fifo


def test_unset_settings_take_the_documented_defaults() -> None:
    settings = load_settings({}, REQUIRED_ENV)
    for setting in SETTINGS:
        if setting.default is not None:
            assert getattr(settings, setting.field) == setting.default, setting.field


def test_the_documented_defaults_are_the_settings_defaults() -> None:
    declared = {f.name: f.default for f in dataclasses.fields(Settings)}
    for setting in SETTINGS:
        if setting.default is not None:
            assert declared[setting.field] == setting.default, setting.field


def test_every_setting_is_a_field_of_settings() -> None:
    names = {f.name for f in dataclasses.fields(Settings)}
    assert {s.field for s in SETTINGS} <= names


def test_every_setting_has_its_own_flag_and_variable() -> None:
    assert len({s.flag for s in SETTINGS}) == len(SETTINGS)
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)


def test_settings_are_read_from_the_environment() -> None:
    settings = load_settings(
        {},
        {
            **REQUIRED_ENV,
            "FEEDBACK_CONCURRENCY": "4",
            "FEEDBACK_RATE_LIMIT": "12.5",
            "FEEDBACK_VISIBILITY_TIMEOUT": "90",
            "FEEDBACK_LOG_FORMAT": "JSON",
            "FEEDBACK_USERNAME_HASH_KEY": HASH_KEY,
        },
    )
    assert settings.concurrency == 4
    assert settings.rate_limit == 12.5
    assert settings.visibility_timeout_s == 90.0
    assert settings.log_format == "json"
    assert settings.username_hash_key == HASH_KEY.encode()


def test_settings_are_read_from_flags() -> None:
    args = parsed_flags(
        "--queue-url", QUEUE, "--dlq-url", DLQ, "--concurrency", "3", "--max-attempts", "2"
    )
    settings = load_settings(args, {})
    assert settings.queue_url == QUEUE
    assert settings.concurrency == 3
    assert settings.max_attempts == 2


def test_a_flag_wins_over_the_environment() -> None:
    args = parsed_flags("--concurrency", "3", "--log-level", "debug")
    env = {**REQUIRED_ENV, "FEEDBACK_CONCURRENCY": "30", "FEEDBACK_LOG_LEVEL": "error"}
    settings = load_settings(args, env)
    assert settings.concurrency == 3
    assert settings.log_level == "debug"


def test_an_empty_variable_counts_as_unset() -> None:
    settings = load_settings({}, {**REQUIRED_ENV, "FEEDBACK_CONCURRENCY": "  "})
    assert settings.concurrency == SETTINGS_BY_FIELD["concurrency"].default


def test_without_a_hash_key_each_process_draws_a_random_one() -> None:
    first = load_settings({}, REQUIRED_ENV).username_hash_key
    second = load_settings({}, REQUIRED_ENV).username_hash_key
    assert first != second
    assert len(first) >= len("0123456789abcdef")


def _bad_cases() -> list[object]:
    return [
        pytest.param(field, value, id=f"{field}={value!r}")
        for field, values in BAD_VALUES.items()
        for value in values
    ]


@pytest.mark.parametrize(("field", "value"), _bad_cases())
def test_a_bad_variable_is_refused_naming_the_variable(field: str, value: str) -> None:
    setting = SETTINGS_BY_FIELD[field]
    error = config_error({}, {**REQUIRED_ENV, setting.env: value})
    assert error.setting == setting.env
    assert str(error).startswith(setting.env)


@pytest.mark.parametrize(("field", "value"), _bad_cases())
def test_a_bad_flag_is_refused_naming_the_flag(field: str, value: str) -> None:
    setting = SETTINGS_BY_FIELD[field]
    error = config_error(parsed_flags(f"{setting.flag}={value}"), REQUIRED_ENV)
    assert error.setting == setting.flag


def test_every_setting_but_free_text_has_bad_values_under_test() -> None:
    free_text = {f for f, s in SETTINGS_BY_FIELD.items() if s.parse is str}
    assert set(BAD_VALUES) == set(SETTINGS_BY_FIELD) - free_text


def test_the_error_shows_the_refused_value() -> None:
    error = config_error({}, {**REQUIRED_ENV, "FEEDBACK_CONCURRENCY": "lots"})
    assert "lots" in error.reason


@pytest.mark.parametrize("secret", ["hunter2-hunter2", "x", "0123456789abcde"])
@pytest.mark.parametrize("via", ["flag", "env"])
def test_a_refused_hash_key_is_never_echoed(secret: str, via: str) -> None:
    setting = SETTINGS_BY_FIELD["username_hash_key"]
    if via == "flag":
        error = config_error(parsed_flags(f"{setting.flag}={secret}"), REQUIRED_ENV)
    else:
        error = config_error({}, {**REQUIRED_ENV, setting.env: secret})
    assert secret not in str(error)
    assert repr(secret) not in str(error)


def test_a_hash_key_that_is_not_utf8_is_refused_without_quoting_any_of_it() -> None:
    # os.environ decodes undecodable bytes to lone surrogates (surrogateescape).
    secret = "0123456789abcdef\udcff"
    error = config_error({}, {**REQUIRED_ENV, "FEEDBACK_USERNAME_HASH_KEY": secret})
    assert "udcff" not in str(error).lower()
    assert "16" not in error.reason


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.required], ids=lambda s: s.field)
@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_a_missing_required_setting_is_refused_naming_flag_and_variable(
    setting: Setting, value: str | None
) -> None:
    env = dict(REQUIRED_ENV)
    if value is None:
        del env[setting.env]
    else:
        env[setting.env] = value
    error = config_error({}, env)
    assert setting.flag in error.setting
    assert setting.env in error.setting


def test_a_fifo_queue_with_a_standard_dlq_is_refused() -> None:
    error = config_error({}, {"FEEDBACK_QUEUE_URL": FIFO_QUEUE, "FEEDBACK_DLQ_URL": DLQ})
    assert "FEEDBACK_DLQ_URL" in error.setting


def test_a_standard_queue_with_a_fifo_dlq_is_refused() -> None:
    error = config_error({}, {"FEEDBACK_QUEUE_URL": QUEUE, "FEEDBACK_DLQ_URL": FIFO_DLQ})
    assert "FEEDBACK_DLQ_URL" in error.setting


def test_a_fifo_queue_with_a_fifo_dlq_is_fifo() -> None:
    settings = load_settings({}, {"FEEDBACK_QUEUE_URL": FIFO_QUEUE, "FEEDBACK_DLQ_URL": FIFO_DLQ})
    assert settings.is_fifo


def test_the_dlq_must_not_be_the_source_queue() -> None:
    error = config_error({}, {"FEEDBACK_QUEUE_URL": QUEUE, "FEEDBACK_DLQ_URL": QUEUE})
    assert "FEEDBACK_DLQ_URL" in error.setting


@pytest.mark.parametrize("shutdown", ["60", "61", "600"])
def test_a_shutdown_grace_not_shorter_than_the_visibility_timeout_is_refused(
    shutdown: str,
) -> None:
    env = {
        **REQUIRED_ENV,
        "FEEDBACK_VISIBILITY_TIMEOUT": "60",
        "FEEDBACK_SHUTDOWN_TIMEOUT": shutdown,
    }
    error = config_error({}, env)
    assert "FEEDBACK_SHUTDOWN_TIMEOUT" in error.setting


def test_a_shutdown_grace_just_under_the_visibility_timeout_is_accepted() -> None:
    env = {
        **REQUIRED_ENV,
        "FEEDBACK_VISIBILITY_TIMEOUT": "60",
        "FEEDBACK_SHUTDOWN_TIMEOUT": "59.5",
    }
    assert load_settings({}, env).shutdown_timeout_s == 59.5


def test_a_visibility_shorter_than_the_default_shutdown_grace_is_refused() -> None:
    shutdown_default = SETTINGS_BY_FIELD["shutdown_timeout_s"].default
    env = {**REQUIRED_ENV, "FEEDBACK_VISIBILITY_TIMEOUT": f"{shutdown_default:g}"}
    error = config_error({}, env)
    assert "FEEDBACK_SHUTDOWN_TIMEOUT" in error.setting


def test_max_held_leaves_room_for_a_receive_batch_beyond_concurrency() -> None:
    settings = load_settings({}, {**REQUIRED_ENV, "FEEDBACK_CONCURRENCY": "5"})
    assert settings.max_held > settings.concurrency


_NUMBERISH = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=True).map(str),
    st.from_regex(r"\A[-+ ]?[0-9_.eE]{0,12}[a-z%]?\Z"),
    st.text(max_size=20),
)


@given(field=st.sampled_from(NUMERIC_FIELDS), text=_NUMBERISH, via_flag=st.booleans())
def test_numeric_parsers_only_ever_raise_config_error_naming_the_source(
    field: str, text: str, via_flag: bool
) -> None:
    setting = SETTINGS_BY_FIELD[field]
    args = {field: text} if via_flag else {}
    environ = {} if via_flag else {setting.env: text}
    try:
        values = resolve(args, environ, [field])
    except ConfigError as error:
        refused: ConfigError | None = error
    else:
        refused = None
    if refused is not None:
        assert refused.setting == (setting.flag if via_flag else setting.env)
        return
    if field not in values:  # blank: the default applies
        assert not text.strip()
        return
    value = values[field]
    assert value == value  # never NaN
    assert value >= 0
    assert value != float("inf")


def test_per_region_endpoints_are_read_with_a_catch_all_for_the_rest() -> None:
    settings = load_settings(
        {},
        REQUIRED_ENV
        | {
            "FEEDBACK_COGNITO_ENDPOINTS": "eu-west-1=https://vpce-1.cognito-idp.eu-west-1"
            ".vpce.amazonaws.com, *=http://127.0.0.1:4566"
        },
    )
    assert settings.cognito_endpoint("eu-west-1") == (
        "https://vpce-1.cognito-idp.eu-west-1.vpce.amazonaws.com"
    )
    assert settings.cognito_endpoint("us-east-1") == "http://127.0.0.1:4566"


def test_without_endpoints_every_region_goes_to_aws_itself() -> None:
    assert load_settings({}, REQUIRED_ENV).cognito_endpoint("eu-west-1") is None


@pytest.mark.parametrize(
    "variable", ["AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", "AWS_ENDPOINT_URL"]
)
def test_one_endpoint_for_every_region_is_refused_at_start_up_with_what_to_set(
    variable: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, REQUIRED_ENV | {variable: "https://vpce-1.example.com"})
    assert caught.value.setting == variable
    assert "FEEDBACK_COGNITO_ENDPOINTS" in caught.value.reason


def test_botocores_override_is_ignored_once_the_endpoints_are_given_per_region() -> None:
    env = REQUIRED_ENV | {
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": "http://127.0.0.1:1",
        "FEEDBACK_COGNITO_ENDPOINTS": "*=http://127.0.0.1:2",
    }
    assert load_settings({}, env).cognito_endpoint("eu-west-1") == "http://127.0.0.1:2"


# -- names, readability and sources ----------------------------------------------------------


def unknown_name_error(environ: dict[str, str]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        check_variable_names(environ)
    return caught.value


def test_an_unknown_feedback_variable_is_refused_naming_the_closest_setting() -> None:
    error = unknown_name_error({**REQUIRED_ENV, "FEEDBACK_CONCURRENCYY": "4"})
    assert error.setting == "FEEDBACK_CONCURRENCYY"
    assert "did you mean FEEDBACK_CONCURRENCY?" in error.reason


def test_an_unknown_feedback_variable_with_no_close_setting_is_still_refused() -> None:
    error = unknown_name_error({**REQUIRED_ENV, "FEEDBACK_XYZZY": "1"})
    assert error.setting == "FEEDBACK_XYZZY"
    assert "did you mean" not in error.reason


def test_other_variables_are_none_of_the_workers_business() -> None:
    check_variable_names({**REQUIRED_ENV, "AWS_REGION": "eu-west-1", "FEEDBACKS": "x"})


def test_a_variable_holding_bytes_that_are_not_utf8_is_refused_as_unreadable() -> None:
    unreadable = "https://sqs.eu-west-1.amazonaws.com/1/q" + "\udcff"  # os.environ's escape
    error = config_error({}, {**REQUIRED_ENV, "FEEDBACK_QUEUE_URL": unreadable})
    assert error.setting == "FEEDBACK_QUEUE_URL"
    assert "not readable" in error.reason
    assert "sqs" not in error.reason


def test_each_setting_records_whether_a_flag_the_environment_or_the_default_gave_it() -> None:
    settings = load_settings(
        parsed_flags("--concurrency", "3"), {**REQUIRED_ENV, "FEEDBACK_LOG_LEVEL": "debug"}
    )
    assert settings.sources["concurrency"] == FROM_FLAG
    assert settings.sources["log_level"] == FROM_ENVIRONMENT
    assert settings.sources["queue_url"] == FROM_ENVIRONMENT
    assert settings.sources["rate_limit"] == FROM_DEFAULT
    assert set(settings.sources) == set(SETTINGS_BY_FIELD)


@pytest.mark.parametrize(
    ("environ", "shown"),
    [
        ({**REQUIRED_ENV, "FEEDBACK_USERNAME_HASH_KEY": HASH_KEY}, HIDDEN_SET),
        (REQUIRED_ENV, HIDDEN_RANDOM),
    ],
)
def test_the_effective_settings_show_every_value_but_the_secret(
    environ: dict[str, str], shown: str
) -> None:
    effective = effective_settings(load_settings({}, environ))
    assert effective["username_hash_key"] == shown
    assert HASH_KEY not in str(effective)
    assert effective["queue_url"] == QUEUE
    assert set(effective) == set(SETTINGS_BY_FIELD)
