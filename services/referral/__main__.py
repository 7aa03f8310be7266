"""`python -m services.referral`: run the referral service with settings from the environment."""

from services.referral.app import create_app
from services.referral.settings import Settings
from shared.service import serve


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
