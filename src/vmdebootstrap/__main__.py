from vmdebootstrap.cli import main

raise SystemExit(main())
