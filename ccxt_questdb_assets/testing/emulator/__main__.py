from ccxt_questdb_assets.testing.emulator.cli import main

raise SystemExit(main())
