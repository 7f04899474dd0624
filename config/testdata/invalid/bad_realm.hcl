realm = "ice\tgate"
