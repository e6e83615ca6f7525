from pixelwise.cli.main import main

raise SystemExit(main())
