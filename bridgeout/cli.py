def main(argv=None):
    raise SystemExit("cli not yet written")
