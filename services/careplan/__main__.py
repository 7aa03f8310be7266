"""`python -m services.careplan`: run the careplan service with settings from the environment."""

from services.careplan.app import create_app
from services.careplan.settings import Settings
from shared.service import serve


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
