"""Every option of every command is documented in README.md and in
man/ksnoop.8 (by one of its names), and the man page names every command:
a user-visible change updates --help, README and the man page together."""

import os
import re

import pytest

from ksnoop.cli.main import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


README = _read("README.md")
# roff: \- is a hyphen, \fB \fI \fR switch fonts
MAN = re.sub(r"\\f[BIRP]", "", _read("man/ksnoop.8").replace("\\-", "-"))


def _named(text, word):
    return re.search(r"(?<![\w-])" + re.escape(word) + r"(?![\w-])", text) is not None


OPTIONS = [(name, p) for name, cmd in sorted(cli.commands.items()) for p in cmd.params
           if p.param_type_name == "option" and "--help" not in p.opts]


def test_there_are_options_to_check():
    assert len(OPTIONS) > 30 and {n for n, _ in OPTIONS} >= {"trace", "info", "count", "hist", "render"}


@pytest.mark.parametrize("doc", ["README", "man"])
@pytest.mark.parametrize("name,opt", OPTIONS, ids=[f"{n}{p.opts[-1]}" for n, p in OPTIONS])
def test_option_is_documented(doc, name, opt):
    text = README if doc == "README" else MAN
    assert any(_named(text, o) for o in opt.opts + opt.secondary_opts), (name, opt.opts, doc)


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_command_is_in_the_man_page_and_readme(name):
    assert _named(MAN, f"ksnoop {name}") or _named(MAN, name), name
    assert f"ksnoop {name}" in README, name
