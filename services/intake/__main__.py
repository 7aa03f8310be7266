"""`python -m services.intake`: run the intake service with settings from the environment."""

from services.intake.app import create_app
from services.intake.settings import Settings
from shared.service import serve


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
