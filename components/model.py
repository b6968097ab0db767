"""`python -m components.model`: see components/tools/model.py."""

from components.tools.model import main

if __name__ == "__main__":
    raise SystemExit(main())
