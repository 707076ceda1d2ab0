"""The local stack of cognito-feedback-worker: moto's SQS server, a Cognito threat-protection
emulator on the real wire protocol, and the demo behind ``make run``. Never shipped in the
worker's wheel or image: it depends on ``worker``, never the reverse."""
