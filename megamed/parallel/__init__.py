"""megamed.parallel"""
