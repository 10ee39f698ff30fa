"""The serving benchmark (`make bench`): wrk against the stack and three references."""
