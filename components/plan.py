"""`python -m components.plan`: the command people and workflows type; the tool is components.tools.plan."""

from components.tools.plan import cli

if __name__ == "__main__":
    cli()
