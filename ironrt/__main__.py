from ironrt.cli import main

raise SystemExit(main())
