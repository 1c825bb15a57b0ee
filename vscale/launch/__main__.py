from vscale.launch.sweep import main

main()
