from pace_cli.main import main

main()
