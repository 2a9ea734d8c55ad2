import os

import lit.formats

config.name = "lrc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.test_source_root = os.path.dirname(__file__)
root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
venv_bin = os.path.join(root, ".venv", "bin")
config.environment["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
config.substitutions.append(("lr-opt", os.path.join(venv_bin, "lr-opt")))
config.substitutions.append(("FileCheck", os.path.join(venv_bin, "filecheck")))
config.excludes = ["Output"]
