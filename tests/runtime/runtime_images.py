"""Small test images shared by the runtime tests."""

import numpy as np


def write_images(folder, cv2, count=4, size=(96, 128)):
    """`count` light PNGs, each with one black square (a 'dark' defect for dark_spot_model)."""
    folder.mkdir(parents=True, exist_ok=True)
    height, width = size
    for index in range(count):
        image = np.full((height, width, 3), 200, np.uint8)
        x = 10 + 15 * index
        image[30:70, x:x + 40] = 0
        cv2.imwrite(str(folder / "{:02d}.png".format(index)), image)
    return folder
