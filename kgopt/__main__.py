from kgopt.cli.main import app

app(prog_name="kgopt")
