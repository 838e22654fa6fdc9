"""megamed.data"""
