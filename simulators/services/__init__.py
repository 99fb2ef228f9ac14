"""Local fakes of third-party services (webhook, SMS, chat robots, SMTP) for tests and the demo."""
