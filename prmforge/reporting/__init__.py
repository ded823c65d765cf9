"""Operations on a finished build: the HTML report, the quarantine listing and the Hugging Face Hub export.

Everything here reads a build through its manifest (``prmforge.pipelines.runners.manifest``); nothing
below this package imports it.
"""
