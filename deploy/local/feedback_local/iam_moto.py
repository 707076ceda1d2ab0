"""moto's server with IAM enforcement, read the way AWS reads SQS permissions.

Enforcement starts when the test says so (POST /moto-api/reset-auth with ``0``), after it has
made its roles, policies and queues. moto then authorises every SQS and STS call against the
caller's identity-based policies, with two differences from AWS that this module removes:

- SQS's batch calls have no IAM actions of their own: AWS authorises DeleteMessageBatch,
  ChangeMessageVisibilityBatch and SendMessageBatch through DeleteMessage,
  ChangeMessageVisibility and SendMessage. moto asks for the batch names.
- The message-move calls name their queue by ARN (``SourceArn``), not by URL, so moto cannot
  tell their resource and asks for ``*``.
- moto names an action after the service its signature is scoped to; CloudWatch signs as
  ``monitoring``, but its IAM actions are ``cloudwatch:*``.

moto does not authorise Cognito, and the project's emulator is not IAM-aware: Cognito calls are
outside what this server proves. ``python -m feedback_local.iam_moto`` serves like
``stack_process``'s moto: it prints ``MOTO_URL=<url>`` and stops at SIGTERM or stdin EOF.
"""

from __future__ import annotations

import sys
from typing import Any

BATCH_ACTIONS = {
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
    "SendMessageBatch": "SendMessage",
}
ARN_PARAMETERS = ("SourceArn", "QueueArn")
# Signing name -> IAM action prefix, where they differ.
IAM_PREFIXES = {"monitoring": "cloudwatch"}


def _patch_moto() -> None:
    from moto.iam import access_control
    from moto.sqs.responses import SQSResponse

    base = access_control.IAMRequest

    class SqsAwareIAMRequest(base):  # type: ignore[misc, valid-type]
        """IAMRequest with SQS's batch calls authorised as their single-message actions."""

        def __init__(self, **kwargs: Any) -> None:
            action = kwargs.get("action")
            if isinstance(action, str):
                kwargs["action"] = BATCH_ACTIONS.get(action, action)
            super().__init__(**kwargs)
            service, _, name = str(self._action).partition(":")  # type: ignore[has-type]
            self._action = f"{IAM_PREFIXES.get(service, service)}:{name}"

    # moto imports IAMRequest from this module at each call, so replacing it here is enough.
    access_control.__dict__["IAMRequest"] = SqsAwareIAMRequest

    queue_resource = SQSResponse._determine_resource

    def determine_resource(self: Any) -> str:
        for name in ARN_PARAMETERS:
            arn = self._get_param(name)
            if isinstance(arn, str) and arn.startswith("arn:"):
                return arn
        resource: str = queue_resource(self)
        return resource

    SQSResponse._determine_resource = determine_resource  # type: ignore[method-assign]


def main() -> int:
    _patch_moto()
    from feedback_local.stack_process import _serve_moto

    return _serve_moto()


if __name__ == "__main__":
    sys.exit(main())
