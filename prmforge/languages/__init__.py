"""Shared languages: the contracts that suites write and verifiers read.

A suite generates problems and rollouts in some language; a verifier checks
them. Neither may import the other (see ``tests/test_import_layers.py`` and
``docs/architecture.md``), so what both must agree on lives here:

- :mod:`prmforge.languages.code_program` — how a ``code`` problem's ``meta``
  describes a program (:class:`~prmforge.languages.code_program.CodeSpec`),
  how solution lines are assembled into a runnable source, and the
  *completed prefix* a line is judged by;
- :mod:`prmforge.languages.formula` — the first-order formula language of the
  ``logic`` suite: AST, parser, printer, derivation-step syntax and SMT-LIB2.

This layer sits just above :mod:`prmforge.schemas`: it imports only
``prmforge.schemas``, itself, the standard library and third-party libraries.
"""
