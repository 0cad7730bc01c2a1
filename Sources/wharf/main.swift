import ArgumentParser

Wharf.main()
