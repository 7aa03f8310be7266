"""`python -m services.gateway`: run the gateway with settings from the environment."""

from services.gateway.app import create_app
from services.gateway.settings import Settings
from shared.service import serve


def main() -> None:
    settings = Settings()
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
