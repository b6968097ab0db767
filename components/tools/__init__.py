"""What people run beside `pulumi up`: plan (with review and compose), discover, verify, and the mocks
the plan and the tests share. Run them as `python -m components.plan|discover|verify`."""
