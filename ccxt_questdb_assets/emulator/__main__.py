from ccxt_questdb_assets.emulator.cli import main

raise SystemExit(main())
