"""`python -m components.verify`: the command people and workflows type; the tool is components.tools.verify."""

from components.tools.verify import cli

if __name__ == "__main__":
    cli()
