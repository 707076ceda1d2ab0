"""The JSON Schema (2020-12) of a message body, generated from Cognito's service model.

Checked in at worker/verdict.schema.json for producers; a test keeps the file equal to what this
module generates. Regenerate: ``python -m worker.schema > worker/verdict.schema.json``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from worker.awsmodel import FEEDBACK_OPERATION, FieldConstraint, cognito_regions
from worker.contract import MAX_BODY_BYTES, SNS_NOTIFICATION, rules

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
POOL_ID: Final = "UserPoolId"


def _any_case(word: str) -> str:
    """An ECMA-262 pattern matching `word` in any ASCII case, e.g. Valid -> [Vv][Aa][Ll]…"""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


def _property_schema(constraint: FieldConstraint) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if constraint.min_length is not None:
        schema["minLength"] = constraint.min_length
    if constraint.max_length is not None:
        schema["maxLength"] = constraint.max_length
    notes = [f"Cognito's {constraint.name}."]
    if constraint.min_length is not None or constraint.max_length is not None:
        notes.append("Lengths count Unicode code points.")
    if constraint.enum:
        # JSON Schema has no case-insensitive enum: spell each value's cases out instead.
        schema["pattern"] = "|".join(f"^{_any_case(value)}$" for value in constraint.enum)
        schema["examples"] = list(constraint.enum)
        notes.append(f"One of {', '.join(constraint.enum)} in any case; sent in that spelling.")
    elif constraint.portable_pattern is not None:
        schema["pattern"] = f"^{constraint.portable_pattern}$"
        if "\\p{" in constraint.portable_pattern:
            notes.append(
                "The pattern uses Unicode property classes (ECMA-262 with the u flag); which "
                "characters they hold depends on the validator's Unicode version, and the "
                "service's own Unicode version is not published."
            )
    if constraint.name == POOL_ID:
        # The part before "_" is the pool's region: one where Cognito has user pools.
        # Region names are lower-case letters, digits and hyphens: nothing to escape, and
        # ECMA-262's u flag refuses an escaped hyphen.
        regions = "|".join(sorted(cognito_regions()))
        schema["allOf"] = [{"pattern": f"^(?:{regions})_"}]
        notes.append("Its prefix is a region where Cognito has user pools.")
    if constraint.sensitive:
        notes.append("Sensitive: never logged in clear.")
    schema["description"] = " ".join(notes)
    return schema


def json_schema() -> dict[str, Any]:
    """A JSON Schema (2020-12) of the message body, built from the service model.

    SNS carries its payload as a JSON string, which JSON Schema can only annotate
    (contentSchema): validators do not check a notification's inner verdict.
    """
    verdict = {
        "type": "object",
        "description": "One verdict. Fields other than these are ignored.",
        "required": [rule.name for rule in rules() if rule.constraint.required],
        "properties": {rule.name: _property_schema(rule.constraint) for rule in rules()},
    }
    eventbridge = {
        "type": "object",
        "description": "An EventBridge event delivered to SQS; its detail is the verdict.",
        "required": ["detail-type", "source", "detail"],
        "properties": {"detail": {"$ref": "#/$defs/Verdict"}},
    }
    sns = {
        "type": "object",
        "description": "An SNS notification (raw message delivery off); Message holds the "
        "verdict or an EventBridge event as a JSON string.",
        "required": ["Type", "Message"],
        "properties": {
            "Type": {"const": SNS_NOTIFICATION},
            "Message": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {
                    "anyOf": [{"$ref": "#/$defs/Verdict"}, {"$ref": "#/$defs/EventBridgeEvent"}]
                },
            },
        },
    }
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": "Cognito threat-protection verdict",
        "description": f"An SQS message body for {FEEDBACK_OPERATION}, at most "
        f"{MAX_BODY_BYTES} bytes of UTF-8: a verdict, an EventBridge event holding one, or an "
        "SNS notification holding either.",
        "anyOf": [
            {"$ref": "#/$defs/Verdict"},
            {"$ref": "#/$defs/EventBridgeEvent"},
            {"$ref": "#/$defs/SnsNotification"},
        ],
        "$defs": {"Verdict": verdict, "EventBridgeEvent": eventbridge, "SnsNotification": sns},
    }


def json_schema_text() -> str:
    """`json_schema()` as checked in at worker/verdict.schema.json."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(json_schema_text(), end="")
