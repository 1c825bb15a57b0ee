from vscale.console import one_line_errors
from vscale.launch.sweep import main

with one_line_errors("python -m vscale.launch --help"):
    main()
