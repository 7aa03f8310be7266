"""The synthetic resource directory the repository ships (directory.json) and the code that
builds it (`python -m services.referral.directory_data.build`)."""
