"""`escalator notify`: SLA events -> webhooks, Slack, e-mail and PagerDuty, by routing rules."""
