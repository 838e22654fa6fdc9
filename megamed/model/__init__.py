"""megamed.model"""
