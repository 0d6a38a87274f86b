"""The PC's firmware as a kernel finds it after SeaBIOS: the tables it leaves in memory."""
