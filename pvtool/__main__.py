from pvtool.cli import main

main()
