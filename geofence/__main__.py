from geofence._main import main

main()
