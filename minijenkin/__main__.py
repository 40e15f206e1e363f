from minijenkin.cli import main

main()
