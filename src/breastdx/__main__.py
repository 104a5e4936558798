"""``python -m breastdx``: the ``breastdx`` command (:mod:`breastdx.cli`), for environments without its script."""

from breastdx.cli import app

if __name__ == "__main__":
    app(prog_name="breastdx")
