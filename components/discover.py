"""`python -m components.discover`: the command people and workflows type; the tool is components.tools.discover."""

from components.tools.discover import cli

if __name__ == "__main__":
    cli()
