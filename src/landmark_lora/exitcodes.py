"""Exit codes of `landmark-lora` and `python flows/retrain.py`, in one place (the CLI returns them,
the retrain flow reads them back out of `dvc repro`'s output).

    from landmark_lora.exitcodes import EXIT_CONTRACT
    return EXIT_CONTRACT          # `landmark-lora validate`: the dataset contract is broken

0 is success and 1 an unexpected error (a traceback), as usual.
"""

EXIT_USAGE = 2  # bad arguments or params: fix the command line or params.yaml
EXIT_CONTRACT = 3  # the dataset contract is broken: fix the photos; retrying cannot help
EXIT_TEMPFAIL = 75  # sysexits EX_TEMPFAIL: a temporary failure (e.g. Prefect did not start), worth trying again
EXIT_BUSY = EXIT_TEMPFAIL  # another operation holds the pipeline lock; try again later
