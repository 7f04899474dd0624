realm = ""
