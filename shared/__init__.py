"""What every mintline service uses: settings, events, streams, database, chain and metrics helpers."""
